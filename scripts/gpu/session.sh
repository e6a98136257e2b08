#!/usr/bin/env bash
# One GPU session: scripts/gpu_check.sh within a time budget, then Table 3's
# ResNet softmax and L2 cells (scripts/gpu/reproduce_fer2013.sh) running on in
# their own process session, and everything that finished packed into
# $OUT/gpu_session.tar.gz. The calls in order: docs/docker.md ("A GPU session");
# the options: tools/gpu_session.py --help (the logic:
# experiments/running/gpu_session.py).
#
# The orchestration needs only the standard library: it runs under the
# project's .venv where there is one, else the machine's python3.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=$repo/.venv/bin/python
[ -x "$python" ] || python=$(command -v python3)
PYTHONPATH=$repo exec "$python" "$repo/tools/gpu_session.py" "$@"
