"""The README and docs/ stay true to the code.

Every repository path they name exists; every command they show for a
project tool (``python tools/X.py``, ``python data_prep/X.py``,
``bash scripts/X.sh``, a ``fer-*`` console command of pyproject.toml) names a
tool that answers ``--help``, uses only flags that its ``--help`` lists, and,
when the command is complete (no ``...``), parses with the tool's own
argparse parser. Flags are discovered from the tools at test time, so a
renamed flag fails the page that still shows the old one.
"""
import argparse
import functools
import importlib
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from data_prep.registry import DATASETS

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PLACEHOLDER_CHARS = "<{*…["
# A command's arguments end at a shell operator or a comment.
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "2>", "&", "#"}


def _ignored_top_names():
    names = set()
    for line in (REPO / ".gitignore").read_text().splitlines():
        line = line.strip()
        if line.startswith("/") and "*" not in line:
            names.add(line.strip("/"))
    return names


def _ignored_paths():
    return {name for name in _ignored_top_names() if "/" in name}


def _top_names():
    """The repository's own top-level folders and files (outputs such as runs/ and data/ are not)."""
    ignored = _ignored_top_names()
    return sorted(entry.name for entry in REPO.iterdir()
                  if not entry.name.startswith(".") and entry.name not in ignored)


def _relative(page):
    return page.relative_to(REPO).as_posix()


def _named_paths(text):
    """Repository paths named anywhere in a page's text, placeholders left out."""
    tops = "|".join(re.escape(name) for name in _top_names())
    pattern = re.compile(rf"(?<![\w./~$@:-])((?:{tops})(?:/[\w.+-]*)*)(.?)")
    for match in pattern.finditer(text):
        path, following = match.group(1), match.group(2)
        if following and following in PLACEHOLDER_CHARS:
            continue
        if following == "-" or (following and following.isalnum()):
            continue   # a longer word that merely starts like a top-level name
        path = path.rstrip(".")
        if any(path.rstrip("/") == ignored or path.startswith(ignored + "/") for ignored in _ignored_paths()):
            continue   # a place the user fills (caffe_build/wheels/ ...), not a committed file
        if "/" not in path and not (REPO / path).is_file():
            continue   # a bare word such as "nets" or "tests" in prose
        yield path


def _exists(path):
    if (REPO / path).exists():
        return True
    stem, _, attribute = path.rpartition(".")
    if stem and (REPO / f"{stem}.py").is_file():
        return True   # module.attribute, e.g. experiments/reporting/common.confusion_text
    folder, _, prefix = path.rpartition("/")
    # a numbered file by its number, e.g. caffe_build/patches/0005
    return prefix.isdigit() and any((REPO / folder).glob(f"{prefix}-*"))


def _link_targets(page, text):
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        yield (page.parent / target.split("#")[0]).resolve()


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_every_named_repository_path_exists(page):
    text = page.read_text()
    missing = sorted({path for path in _named_paths(text) if not _exists(path)})
    missing += sorted({str(target.relative_to(REPO)) if target.is_relative_to(REPO) else str(target)
                       for target in _link_targets(page, text) if not target.exists()})
    assert not missing, (f"{_relative(page)} names paths that do not exist: {missing}; "
                         "fix the page (or the path) so a reader finds what it names")


def _code_blocks(text):
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def _logical_lines(block):
    return re.sub(r"\\\n\s*", " ", block).splitlines()


@functools.cache
def _console_commands():
    """pyproject.toml's console commands: name -> the tool module they run."""
    pyproject = REPO / "pyproject.toml"
    if not pyproject.exists():
        return {}
    scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
    return {name: target.split(":")[0] for name, target in scripts.items()}


def _tool_pattern():
    consoles = "|".join(re.escape(name) for name in _console_commands())
    forms = [r"python3?\s+((?:tools|data_prep|benchmarks)/[\w/]+\.py)", r"bash\s+(scripts/[\w/]+\.sh)"]
    if consoles:
        forms.append(rf"(?<![\w-])({consoles})(?![\w-])")
    return re.compile("|".join(forms))


def _doc_commands():
    """(page, tool, arguments, complete) for every tool command in a code block."""
    pattern = _tool_pattern()
    commands = []
    for page in PAGES:
        for block in _code_blocks(page.read_text()):
            for line in _logical_lines(block):
                for match in pattern.finditer(line):
                    tool = next(group for group in match.groups() if group)
                    rest = line[match.end():].split(")")[0]
                    try:
                        tokens = shlex.split(rest, comments=True)
                    except ValueError:
                        tokens = rest.split()
                    arguments = []
                    for token in tokens:
                        if token in SHELL_STOP:
                            break
                        arguments.append(token)
                    complete = not any(token in ("...", "…") for token in arguments)
                    arguments = [token.strip("[]") for token in arguments if token not in ("...", "…")]
                    commands.append((_relative(page), tool, [a for a in arguments if a], complete))
    return commands


DOC_COMMANDS = _doc_commands()


def _tool_script(tool):
    """The Python file that answers a doc command's arguments, or None for a script that parses its own."""
    if tool in _console_commands():
        return REPO / (_console_commands()[tool].replace(".", "/") + ".py")
    if tool.endswith(".py"):
        return REPO / tool
    # a shell script that hands its arguments to a tool: exec ... "$repo/tools/X.py" "$@"
    forwarded = re.search(r'"\$repo/((?:tools|data_prep)/\w+\.py)"\s+"\$@"', (REPO / tool).read_text())
    return REPO / forwarded.group(1) if forwarded else None


@functools.cache
def _help_text(tool):
    script = _tool_script(tool)
    if script is None:
        return (REPO / tool).read_text()   # the script parses its own flags: they appear in its text
    _tool_parser(script)   # only a tool whose main() parses its arguments answers --help without working
    completed = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"{tool} --help failed:\n{completed.stderr}"
    return completed.stdout


def _flags(arguments):
    return [token.split("=")[0] for token in arguments if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", token)]


TOOLS_USED = sorted({tool for _, tool, _, _ in DOC_COMMANDS})


def test_the_docs_show_tool_commands():
    assert "scripts/main.sh" in TOOLS_USED and "scripts/test.sh" in TOOLS_USED, TOOLS_USED
    assert any(tool.startswith("tools/") for tool in TOOLS_USED), TOOLS_USED


@pytest.mark.parametrize("tool", TOOLS_USED)
def test_every_tool_the_docs_run_exists_and_every_flag_they_use_is_in_its_help(tool):
    assert (REPO / tool).is_file() or tool in _console_commands(), f"the docs run {tool}, which does not exist"
    if tool == "scripts/test.sh":
        return   # its arguments go to pytest
    help_text = _help_text(tool)
    listed = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text))
    unknown = sorted({f"{page}: {flag}" for page, used, arguments, _ in DOC_COMMANDS if used == tool
                      for flag in _flags(arguments) if flag not in listed})
    assert not unknown, f"flags shown for {tool} that its --help does not list: {unknown}"


class _ParserCaptured(BaseException):   # passes through a tool's "except Exception"
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


class _ParseError(Exception):
    pass


def _tool_parser(script):
    """The argparse parser a tool's main() builds, captured at its parse_args call. A library file
    run as a script hands over to its tool (runtime/forward.py): that tool's parser."""
    handed = re.search(r'run_tool_instead\("(\w+\.py)"\)', script.read_text())
    if handed:
        script = REPO / "tools" / handed.group(1)
    module_name = script.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
    module = importlib.import_module(module_name)

    def capture(parser, args=None, namespace=None):
        raise _ParserCaptured(parser)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        with pytest.raises(_ParserCaptured) as captured:
            module.main([])   # fails here ("DID NOT RAISE") for a tool that never parses its arguments
    return captured.value.parser


def _is_placeholder(value):
    return bool(re.fullmatch(r"<.*>|\{.*\}|[A-Z][A-Z_]*(=[A-Z_]+)?", value))


COMPLETE_PYTHON_COMMANDS = [(page, tool, arguments) for page, tool, arguments, complete in DOC_COMMANDS
                            if complete and _tool_script(tool) is not None and tool != "scripts/test.sh"]


@pytest.mark.parametrize("page, tool, arguments", COMPLETE_PYTHON_COMMANDS,
                         ids=[f"{page}:{tool}:{i}" for i, (page, tool, _) in enumerate(COMPLETE_PYTHON_COMMANDS)])
def test_every_complete_doc_command_parses_with_its_tools_parser(page, tool, arguments, monkeypatch):
    if "--help" in arguments or "-h" in arguments:
        return   # the --help test covers it
    parser = _tool_parser(_tool_script(tool))

    def refuse(message):
        raise _ParseError(message)

    monkeypatch.setattr(parser, "error", refuse)
    monkeypatch.setattr(parser, "exit", lambda status=0, message=None: None)
    try:
        parser.parse_args(arguments)
    except _ParseError as error:
        message = str(error)
        # a type check on a placeholder such as N or <iterations> is the page's shorthand, not drift
        bad_value = re.search(r"invalid (?:.*value|choice): '([^']*)'", message)
        if not (bad_value and _is_placeholder(bad_value.group(1))):
            pytest.fail(f"{page}: `{tool} {shlex.join(arguments)}` does not parse: {message}")


def test_the_path_check_catches_a_missing_path():
    assert list(_named_paths("see `tools/no_such_tool.py` and benchmarks/layers.md.")) == [
        "tools/no_such_tool.py", "benchmarks/layers.md"]
    assert list(_named_paths("prototxt/{net}_{variant}_solver.prototxt and runs/x")) == []


def _prepare_commands():
    """(page, parsed arguments) of every complete prepare command the docs show."""
    commands = []
    for page, tool, arguments, complete in DOC_COMMANDS:
        script = _tool_script(tool)
        if not complete or script is None or script.stem != "prepare":
            continue
        if any(_is_placeholder(token) for token in arguments):
            continue
        commands.append((page, _tool_parser(script).parse_args(arguments)))
    return commands


def test_the_docs_prepare_every_folder_the_committed_solvers_read_at_the_nets_size():
    """Each data/prepared/<folder> a committed net reads is made by a doc command at that net's input size."""
    made = {}
    for page, args in _prepare_commands():
        made[Path(args.out).name] = (page, args)
    needed = {}
    for net_file in sorted((REPO / "prototxt").glob("*_train_val.prototxt")):
        text = net_file.read_text()
        size = re.search(r'name: "input_is_1x(\d+)x\1"', text)
        for folder in re.findall(r'source: "data/prepared/([^/"]+)/', text):
            needed.setdefault(folder, (net_file.name, int(size.group(1)) if size else None))
    assert needed, "no committed net reads data/prepared/: this test no longer checks anything"
    missing = sorted(folder for folder in needed if folder not in made)
    assert not missing, (f"no doc command prepares {missing}, which the committed nets read; "
                         "add the prepare command to docs/data.md")
    stored = {folder: args.size or DATASETS[args.dataset].size for folder, (_, args) in made.items()}
    wrong_size = {folder: (net, size, stored[folder]) for folder, (net, size) in needed.items()
                  if size is not None and stored[folder] != size}
    assert not wrong_size, ("prepared at another size than the net reads (net, its input, the stored size): "
                            f"{wrong_size}; pass --size")
