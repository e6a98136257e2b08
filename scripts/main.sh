#!/usr/bin/env bash
# The project's main job on the embedded synthetic dataset: installs what is
# missing (idempotent), then generate -> prepare -> cross-validate -> report.
# Finished steps are reused on a second run. Extra arguments go to tools/main_job.py.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/install.sh"
exec "$repo/.venv/bin/python" "$repo/tools/main_job.py" "$@"
