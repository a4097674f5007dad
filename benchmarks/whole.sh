#!/usr/bin/env bash
# The committed whole-run benchmarks (benchmarks/results/whole_<model>.json, issue 24): CIFAR-10 IPC 500
# at the preset's settings (α 0.1, 500 epochs, J 3, 5 evaluation runs), the model as filter and as
# evaluation model, ConvNet-BN then ResNet-18; the teacher of the curriculum JSONs (ConvNet-BN, 15 epochs
# by the teacher recipe, trained here when missing) and the published forgetting scores. Each side trains
# 5 epochs per training, scaled to 500. Resumable: a killed run continues from its finished parts.
# Then the plan's estimate for the same settings (benchmarks/results/plan_accuracy.json).
# Run it with nothing else on the machine:
#   bash benchmarks/whole.sh [MODEL ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py=$PYTHON; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
work=${BENCH_WORK:-$HOME/.cache/fastccfs-bench}
scores=../shared/data/reference-scores/forgetting_CIFAR10.npy
mkdir -p "$work" benchmarks/results
[ -d "$work/cifar/cifar-10-batches-py" ] || "$py" ../shared/data/make_cifar10_batches.py "$work/cifar"
teacher="$work/teacher_convnet_bn_15ep.pt"
[ -f "$teacher" ] || "$py" benchmarks/bench_teacher.py "$work/cifar" "$teacher" 15
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(convnet_bn resnet18)
for model in "${models[@]}"; do
  "$py" -m fastccfs bench whole cifar10 --ipc 500 --root "$work/cifar" --scores "$scores" --teacher "$teacher" \
    --teacher-model convnet_bn --model "$model" --measure-epochs 5 --work "$work/whole_$model" --quiet \
    --json "benchmarks/results/whole_${model}.json"
done
"$py" benchmarks/plan_accuracy.py --root "$work/cifar" --teacher "$teacher" --scores "$scores" "${models[@]}"
