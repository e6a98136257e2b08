"""Documented commands kept where they were: a library file run as a script hands over to its tool.

``python data_prep/prepare.py ...`` is the command the docs show, but command lines
live in tools/ and libraries may not import tools (docs/architecture.md). So the
library file, run as a script, replaces its own process with ``tools/<name>``
under the same interpreter and arguments: one process, the tool's exit status
and signals, and no import from a library into tools/.
"""
import os
import sys

from runtime.caffe_env import REPO_ROOT


def run_tool_instead(tool_name):
    """Replace this process with ``python tools/<tool_name> <this process's arguments>``."""
    tool = REPO_ROOT / "tools" / tool_name
    os.execv(sys.executable, [sys.executable, str(tool), *sys.argv[1:]])
