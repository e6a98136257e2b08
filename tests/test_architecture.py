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
