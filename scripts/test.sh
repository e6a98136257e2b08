#!/usr/bin/env bash
# The project's test command: installs what is missing (idempotent), then runs
# the whole pytest suite with the project's interpreter. Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/install.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$repo/tests" "$@"
