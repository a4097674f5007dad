#!/usr/bin/env bash
# The one prepared GPU benchmark (single GPU, no network; torch present there). Under 8 minutes on an
# H100; writes one JSON to $OUT/gpu.json (or --out FILE). `--smoke` runs it on a CPU with tiny sizes.
#   bash benchmarks/gpu.sh            # on the GPU machine
#   bash benchmarks/gpu.sh --smoke    # anywhere (CI checks this)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_bench.py "$@"
