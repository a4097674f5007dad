"""How close `fastccfs run --plan` comes to the time a run takes (issue 24: within ±30 %), on this machine:
  - `fastccfs run demo` at its preset (teacher trained here): the plan every run keeps in timings.json,
    against the stages' measured wall-clock in the same file;
  - CIFAR-10 IPC 500 per model (the setting of benchmarks/results/whole_<model>.json): the plan of
    `fastccfs run cifar10 --ipc 500 --teacher T --scores S --init random --no-filter-test` (random real
    images standing in for the distilled part, as the benchmark does), against the fastccfs side of that
    benchmark (its phases and its evaluation, each soft-label mode).
Writes benchmarks/results/plan_accuracy.json.
    python benchmarks/plan_accuracy.py --root CIFAR_ROOT --teacher T --scores S [MODEL ...]
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastccfs  # noqa: E402
from fastccfs.atomic import write_json  # noqa: E402
from fastccfs.machine import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def row(estimate: float, measured: float) -> dict:
    return {"estimate_s": round(estimate, 1), "measured_s": round(measured, 1), "ratio": round(estimate / measured, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["convnet_bn", "resnet18"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--scores", required=True)
    args = parser.parse_args()
    result = {"machine": machine(), "target": "estimate within ±30 % of the measured time (ratio 0.7–1.3)"}
    with tempfile.TemporaryDirectory() as tmp:
        fastccfs.run("demo", out=Path(tmp) / "demo", progress=False)
        plan = json.loads((Path(tmp) / "demo" / "timings.json").read_text())["decisions"]["plan"]
    result["demo"] = {**row(plan["estimate_s"], plan["measured_s"]), "stages": plan["stages"],
                      "command": "fastccfs run demo"}
    for model in args.models:
        bench = RESULTS / f"whole_{model}.json"
        if not bench.is_file():
            continue
        whole = json.loads(bench.read_text())
        for mode in ("online", "shared"):
            plan = fastccfs.run("cifar10", 500, out=Path(tempfile.gettempdir()) / "fastccfs-plan-unused", plan=True,
                                progress=False, root=args.root, teacher=args.teacher, scores=args.scores,
                                teacher_model="convnet_bn", model=model, eval_models=[model], init="random",
                                filter_test=False, soft_labels=mode)
            names = [*(f"phase_{j}" for j in range(1, 4)), "evaluation"]
            measured = {n: whole["stages"][n if n != "evaluation" else f"evaluation_{mode}"]["fast_s"] for n in names}
            result[f"cifar10_ipc500_{model}_{mode}"] = {
                **row(sum(plan["stages"][n]["estimate_s"] for n in names), sum(measured.values())),
                "stages": {n: row(plan["stages"][n]["estimate_s"], measured[n]) for n in names},
                "measured_by": f"benchmarks/results/whole_{model}.json (fastccfs side, extrapolated)"}
    write_json(RESULTS / "plan_accuracy.json", result)
    for name, r in result.items():
        if isinstance(r, dict) and "ratio" in r:
            print(f"{name:<36} estimate {r['estimate_s']:>9.0f} s  measured {r['measured_s']:>9.0f} s  "
                  f"ratio {r['ratio']:.2f}")


if __name__ == "__main__":
    main()
