"""The import rules of docs/architecture.md hold on the source: the table there is what is checked."""
import ast
import re

import pytest

from runtime.caffe_env import REPO_ROOT

RULES_HEADING = "## Import rules"


def import_rules():
    """{package: set of project packages it may import}, read from docs/architecture.md's table."""
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = text.split(RULES_HEADING, 1)[1].split("\n## ", 1)[0]
    rules = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rules[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", cells[1]))
    return rules


def imported_packages(path, project_packages):
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in project_packages)
    return found


def test_the_rules_table_names_every_package_of_the_repo():
    rules = import_rules()
    packages = {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    assert packages <= set(rules), f"packages without a rule in docs/architecture.md: {packages - set(rules)}"
    for allowed in rules.values():
        assert allowed <= set(rules), allowed - set(rules)


@pytest.mark.parametrize("package", sorted(import_rules()))
def test_package_imports_only_what_the_rules_allow(package):
    rules = import_rules()
    folder = REPO_ROOT / package
    if not folder.is_dir():
        pytest.fail(f"docs/architecture.md has a rule for {package}/, which does not exist")
    violations = []
    for path in sorted(folder.rglob("*.py")):
        for imported in imported_packages(path, set(rules)) - rules[package] - {package}:
            violations.append(f"{path.relative_to(REPO_ROOT)} imports {imported}")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_a_forbidden_import(tmp_path):
    # The checker itself must catch what it is there to catch.
    source = tmp_path / "module.py"
    source.write_text("import os\nfrom nets.build import roles\nimport tools.crossval\nfrom . import x\n")
    assert imported_packages(source, {"nets", "tools", "data_prep"}) == {"nets", "tools"}


# Command lines live in tools/ (and the scripts around them); every other package is a library:
# it takes typed options, raises typed errors and leaves argv, usage and exit codes to tools/.
COMMAND_PACKAGES = {"tools", "benchmarks", "tests", "scripts"}
# Modules outside tools/ that are commands by design, each with the reason; keep this list short.
COMMANDS_OUTSIDE_TOOLS = {
    # `python -m nets.generate` writes and checks the committed prototxts (docs/nets.md); nets/ owns it.
    "nets/generate.py": "the prototxt generator's own command line",
}


def command_line_habits(path):
    """["line N: what"] for each thing a library must not do: import argparse, raise or build
    SystemExit (or a class derived from it), call sys.exit()/exit()/quit(), or call another
    module's ``main(``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "argparse":
                    found.append(f"line {node.lineno}: imports argparse")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "argparse":
            found.append(f"line {node.lineno}: imports argparse")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                if _dotted(base).split(".")[-1] == "SystemExit":
                    found.append(f"line {node.lineno}: class {node.name} derives from SystemExit")
        elif isinstance(node, ast.Name) and node.id == "SystemExit":
            found.append(f"line {node.lineno}: uses SystemExit")
        elif isinstance(node, ast.Call):
            called = _dotted(node.func)
            if called in ("sys.exit", "exit", "quit", "os._exit"):
                found.append(f"line {node.lineno}: calls {called}()")
            elif called.endswith(".main") or (called == "main" and _imports_main(tree)):
                found.append(f"line {node.lineno}: calls another module's {called}()")
    return found


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _imports_main(tree):
    """Whether ``main`` is imported from another module (``from x import main``)."""
    return any(isinstance(node, ast.ImportFrom) and any((alias.asname or alias.name) == "main"
                                                        for alias in node.names)
               for node in ast.walk(tree))


def library_modules():
    for package in sorted(set(import_rules()) - COMMAND_PACKAGES):
        yield from sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(set(import_rules()) - COMMAND_PACKAGES))
def test_libraries_neither_parse_argv_nor_exit(package):
    violations = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative in COMMANDS_OUTSIDE_TOOLS:
            continue
        violations += [f"{relative} {what}" for what in command_line_habits(path)]
    assert not violations, ("libraries raise typed errors and take typed options; argv, messages for "
                            "people and exit codes belong in tools/:\n" + "\n".join(violations))


def test_the_exceptions_name_existing_command_modules():
    for relative in COMMANDS_OUTSIDE_TOOLS:
        assert (REPO_ROOT / relative).is_file(), relative


@pytest.mark.parametrize("source, expected", [
    ("import argparse\n", "line 1: imports argparse"),
    ("from argparse import ArgumentParser\n", "line 1: imports argparse"),
    ("def f():\n    raise SystemExit('error: no')\n", "line 2: uses SystemExit"),
    ("class RunError(SystemExit):\n    pass\n", "line 1: class RunError derives from SystemExit"),
    ("import sys\nsys.exit(1)\n", "line 2: calls sys.exit()"),
    ("exit(2)\n", "line 1: calls exit()"),
    ("from data_prep import prepare\nprepare.main(['--out', 'x'])\n", "line 2: calls another module's prepare.main()"),
    ("from tools.prepare import main\nmain([])\n", "line 2: calls another module's main()"),
])
def test_the_checker_sees_each_command_line_habit(tmp_path, source, expected):
    # The checker itself must catch what it is there to catch.
    module = tmp_path / "module.py"
    module.write_text(source)
    assert expected in command_line_habits(module)


def test_the_checker_leaves_a_plain_library_alone(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("class RunFolderError(ValueError):\n    pass\n\n\ndef main():\n    return 0\n\n\n"
                      "def run():\n    raise RunFolderError('x')\n")
    assert command_line_habits(module) == []
