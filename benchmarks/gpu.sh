#!/usr/bin/env bash
# The one prepared GPU benchmark (single GPU, no network; torch present there). Under 8 minutes on an
# H100; writes one JSON to $OUT/gpu.json (or --out FILE). `--smoke` runs it on a CPU with tiny sizes.
#   bash benchmarks/gpu.sh            # on the GPU machine
#   bash benchmarks/gpu.sh --smoke    # anywhere (CI checks this)
# The interpreter: $PYTHON when set (as the Makefile and the tests set it), else the project's .venv,
# else `python3` — never the bare PATH `python`, which on a fresh machine has no torch.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then
  py=$PYTHON
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi
exec "$py" benchmarks/gpu_bench.py "$@"
