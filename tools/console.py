"""The console commands of pyproject.toml's [project.scripts] (fer-crossval, fer-predict, ...).

Each command runs its tool exactly as ``python tools/X.py`` does: the tool's
``if __name__ == "__main__":`` block, which owns its exit status. The tools'
``main(argv=None)`` return values are for Python callers (predict's counts,
export_onnx's path, reproduce's success flag), not exit statuses, so the
commands cannot be ``tools.X:main`` (setuptools' wrapper would pass them to
sys.exit). sys.argv is left as the command line, so usage lines name the
command (``usage: fer-predict ...``).
"""
import runpy


def _command(tool):
    def run():
        runpy.run_module(f"tools.{tool}", run_name="__main__")
    run.__name__ = run.__qualname__ = tool
    run.__doc__ = f"Runs tools/{tool}.py's command line (``python tools/{tool}.py``)."
    return run


prepare = _command("prepare")
crossval = _command("crossval")
crossdb = _command("crossdb")
reproduce = _command("reproduce")
report = _command("report")
predict = _command("predict")
export_onnx = _command("export_onnx")
audit_data = _command("audit_data")
respond_ratio = _command("respond_ratio")
main_job = _command("main_job")
fetch_pretrained = _command("fetch_pretrained")
