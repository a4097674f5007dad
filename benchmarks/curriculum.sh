#!/usr/bin/env bash
# The committed one-phase benchmarks (benchmarks/results/curriculum_<model>.json, issue 14): CIFAR-10
# IPC 500 (10 %, the paper's headline), the preset's α, batch rule, lr and 500 epochs, phase 1, for
# ConvNet-BN, the DD ConvNet (instance norm) and ResNet-18, all with one teacher trained here by the
# teacher recipe (ConvNet-BN standing in for ResNet-18 on a 2-core CPU; the JSON says so) and the
# published forgetting scores. Run it with nothing else on the machine:
#   bash benchmarks/curriculum.sh [TEACHER_EPOCHS]
# The interpreter as in gpu.sh; the CIFAR-10 batches are rebuilt from ../shared/data once.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py=$PYTHON; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
teacher_epochs=${1:-15}
work=${BENCH_WORK:-$HOME/.cache/fastccfs-bench}
scores=../shared/data/reference-scores/forgetting_CIFAR10.npy
mkdir -p "$work" benchmarks/results
[ -d "$work/cifar/cifar-10-batches-py" ] || "$py" ../shared/data/make_cifar10_batches.py "$work/cifar"
teacher="$work/teacher_convnet_bn_${teacher_epochs}ep.pt"
common=(cifar10 --ipc 500 --root "$work/cifar" --scores "$scores" --teacher-model convnet_bn --quiet)
for model in convnet_bn convnet resnet18; do
  measure=25
  [ "$model" = resnet18 ] && measure=10
  if [ -f "$teacher" ]; then
    t=(--teacher "$teacher")
  else
    t=(--teacher-epochs "$teacher_epochs" --save-teacher "$teacher")
  fi
  "$py" -m fastccfs bench curriculum "${common[@]}" --model "$model" --measure-epochs "$measure" "${t[@]}" \
    --json "benchmarks/results/curriculum_${model}.json"
done
