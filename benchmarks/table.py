"""pytest-benchmark JSON → the markdown table of benchmarks/README.md.

Rows are grouped (extra_info["group"]); the "speed-up" column is the group's baseline time over the
row's time, the baseline being the stock torchvision DataLoader (loaders), the Python reference (selection) or the
bare training step (training: there the ratio says how close fit() comes to the bare step).
"""
import json
import platform
import sys

BASELINES = ("-stock]", "-python]", "[bare-step-", "-reference]")


def fmt_time(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


def main(path: str) -> None:
    data = json.load(open(path))
    cpu = data["machine_info"].get("cpu", {})
    print(f"Machine: {cpu.get('brand_raw', platform.processor())}, {cpu.get('count', '?')} cores; "
          f"{data['datetime'][:10]}; {data['machine_info'].get('python_implementation', '')} "
          f"{data['machine_info'].get('python_version', '')}\n")
    print("| group | benchmark | mean | images/s | speed-up vs baseline | first epoch (build + warm-up) |")
    print("|---|---|---:|---:|---:|---:|")
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["extra_info"].get("group", b["group"] or ""), []).append(b)
    for group, rows in groups.items():
        base = next((b for b in rows if any(t in b["name"] for t in BASELINES)), None)
        for b in rows:
            mean = b["stats"]["mean"]
            images = b["extra_info"].get("images")
            rate = f"{images / mean:,.0f}" if images else ""
            ratio = f"{base['stats']['mean'] / mean:.2f}×" if base is not None else ""
            first = b["extra_info"].get("first_epoch_s")
            first = f"{fmt_time(first)}" if first is not None else ""
            print(f"| {group} | {b['name'].removeprefix('test_')} | {fmt_time(mean)} | {rate} | {ratio} | {first} |")


def loader_figure(path: str, out: str) -> None:
    """Bar chart of the loader groups' steady-state images/s, one bar group per backend, one bar per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.load(open(path))
    rates = {}
    for b in data["benchmarks"]:
        group = b["extra_info"].get("group", "")
        if group.startswith("loader ") and b["extra_info"].get("images"):
            param = b["name"].split("[", 1)[1].rstrip("]")  # "<dataset>-<backend>"
            backend = param.removeprefix(group.removeprefix("loader ") + "-")
            rates.setdefault(f"{b['extra_info']['pixels']} px", {})[backend] = b["extra_info"]["images"] / b["stats"]["mean"]
    backends = list(next(iter(rates.values())))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(rates)
    for j, (size, by_backend) in enumerate(rates.items()):
        ax.bar([i + j * width for i in range(len(backends))], [by_backend.get(b, 0) for b in backends], width,
               label=size)
    ax.set_xticks([i + width * (len(rates) - 1) / 2 for i in range(len(backends))], backends)
    ax.set(ylabel="images/s (steady state)", title=f"Loader throughput, {data['datetime'][:10]}, CPU")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(out, dpi=110, bbox_inches="tight")


def curriculum_table(paths: list[str]) -> None:
    """`fastccfs bench curriculum` JSONs → one markdown table, a column block per model."""
    rows = [json.load(open(p)) for p in paths]
    print("| | " + " | ".join(f"{r['model']}" for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))

    def line(label, cell):
        print(f"| {label} | " + " | ".join(cell(r) for r in rows) + " |")

    line("filter dtype (amp auto)", lambda r: r["filter_dtype"])
    line("epochs (measured → scaled)", lambda r: f"{r['measured_epochs']} → {r['epochs']}")
    for stage in ("train", "inference", "selection"):
        line(f"{stage}: fastccfs / reference s", lambda r, s=stage: f"{r['stages'][s]['fast_s']:.2f} / "
             f"{r['stages'][s]['reference_s']:.2f}")
        line(f"{stage}: ratio", lambda r, s=stage: f"{r['stages'][s]['ratio']:.1f}×")
    line("images inferred (needed / all)", lambda r: f"{r['inference']['needed']['images']:,} / "
         f"{r['inference']['all']['images']:,}")
    line("**phase total: ratio**", lambda r: f"**{r['total']['ratio']:.1f}×** ({r['total']['fast_s']:.0f} / "
         f"{r['total']['reference_s']:.0f} s)")
    line("phase total with `--inference all`", lambda r: f"{r['total_inference_all']['ratio']:.1f}× "
         f"({r['total_inference_all']['fast_s']:.0f} s; same picks: {r['inference']['all']['same_picks']})")
    line("training GFLOP/s: fastccfs / reference", lambda r: f"{r['flops']['achieved_gflops']['fast_train']:.0f} / "
         f"{r['flops']['achieved_gflops']['reference_train']:.0f}")
    line("share of the CPU peak: fastccfs / reference",
         lambda r: f"{100 * r['flops']['share_of_peak']['fast_train']:.0f} % / "
         f"{100 * r['flops']['share_of_peak']['reference_train']:.0f} %")


if __name__ == "__main__":
    if sys.argv[1] == "--curriculum":  # table.py --curriculum benchmarks/results/curriculum_*.json
        curriculum_table(sys.argv[2:])
        sys.exit()
    main(sys.argv[1])
    if len(sys.argv) > 2:  # table.py RESULTS.json FIGURE.png: also the loader chart
        loader_figure(sys.argv[1], sys.argv[2])
