"""Used by scripts/gpu/pack_bundle.py only: records what a Python process loaded.

At exit, writes to $FER_TRACE_DIR/<pid>.txt every imported module's file and
every shared library mapped into the process, so that the bundle carries
exactly the third-party packages the GPU check needs.
"""
import atexit
import os
import sys


def _record():
    files = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
    with open("/proc/self/maps") as maps:
        files |= {line.split()[-1] for line in maps if ".so" in line and "/" in line}
    path = os.path.join(os.environ["FER_TRACE_DIR"], f"{os.getpid()}.txt")
    with open(path, "w") as out:
        out.write("\n".join(sorted(f for f in files if f)))


if os.environ.get("FER_TRACE_DIR"):
    atexit.register(_record)
