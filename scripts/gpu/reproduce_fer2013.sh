#!/usr/bin/env bash
# Table 3's ResNet softmax and L2 cells on FER2013 at the paper's solver, from
# scratch, on one GPU, in one prepared run. The stages and their options:
# tools/reproduce_fer2013.py --help (the logic: experiments/running/gpu_reproduction.py).
#
#   here:        scripts/gpu/build_bundle.sh
#   GPU machine: scripts/gpu/reproduce_fer2013.sh --fer2013 FER2013.tar [--out DIR]
#
# The orchestration needs only the standard library: it runs under the project's
# .venv where there is one, else the machine's python3; every stage runs in the
# bundle's (or the .venv's) Python.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=$repo/.venv/bin/python
[ -x "$python" ] || python=$(command -v python3)
PYTHONPATH=$repo exec "$python" "$repo/tools/reproduce_fer2013.py" "$@"
