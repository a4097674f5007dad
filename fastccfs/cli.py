"""The `fastccfs` command. Every user error ends as one line on stderr and exit code 2 (`--debug`: traceback)."""
from __future__ import annotations

import argparse
import sys

from fastccfs.errors import UserError


def _convert(args) -> None:
    from fastccfs.store import convert

    stores = convert(args.dataset, args.root, args.cache, download=args.download, size=args.size,
                     workers=args.workers, progress=not args.quiet)
    for split, store in stores.items():
        h, w = store.image_size
        print(f"{store.meta['dataset']}/{split}: {len(store)} images {h}×{w}, {store.num_classes} classes → {store.path}")
    if args.to:
        from fastccfs.formats import convert_store

        for split, store in stores.items():
            path = convert_store(store, args.to, args.pages, args.jpeg_quality, args.workers, not args.quiet)
            print(f"{store.meta['dataset']}/{split} as {args.to} ({args.pages} pages) → {path}")


def _run(args) -> None:
    import time
    from dataclasses import fields

    from fastccfs.config import RunConfig, resolve_run_config
    from fastccfs.pipeline import run

    overrides = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name not in ("dataset", "ipc")}
    cfg = resolve_run_config(args.dataset, args.ipc, args.config, overrides)
    out = args.out or f"runs/{cfg.dataset}-ipc{cfg.ipc}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    summary = run(cfg, out, device=args.device, progress=not args.quiet)
    print(f"\n{cfg.dataset} IPC {cfg.ipc}, {cfg.method}: {summary['set_size']} images → {out} "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"report: {out}/report.html")
    if summary["models"]:
        print(f"{'model':<14} {'final-epoch acc':>20} {'max last 20% acc':>20}")
        for name, r in summary["models"].items():
            cells = [f"{100 * r[k]['mean']:.2f} ± {100 * r[k]['std']:.2f}" for k in ("final_epoch_acc", "max_last_20pct_acc")]
            print(f"{name:<14} {cells[0]:>20} {cells[1]:>20}   ({r['runs']} run(s))")


def _export(args) -> None:
    from pathlib import Path

    from fastccfs.config import RunConfig
    from fastccfs.store import convert
    from fastccfs.synthetic import SyntheticSet, export_imagefolder
    import yaml

    run_dir = Path(args.run_dir)
    if not (run_dir / "synthetic_set.npz").is_file():
        raise UserError(f"{run_dir} has no synthetic_set.npz: the run has not finished its selection")
    cfg = RunConfig(**yaml.safe_load((run_dir / "config.yaml").read_text()))
    store = convert(cfg.dataset, args.root, args.cache, progress=False)["train"]
    out = export_imagefolder(SyntheticSet.load(run_dir / "synthetic_set.npz"), store, args.out)
    print(f"wrote {out}")


def _distill(args) -> None:
    from pathlib import Path

    from fastccfs.config import resolve_run_config
    from fastccfs.distill import dataset_defaults, distill
    from fastccfs.models import create_model, load_checkpoint
    from fastccfs.pipeline import Context, stage_teacher
    from fastccfs.store import convert

    stores = convert(args.dataset, args.root, args.cache, progress=not args.quiet)
    train = stores["train"]
    out = Path(args.out or f"distilled/{train.meta['dataset']}-ipc{args.ipc}")
    cfg = dataset_defaults(args.dataset)
    for name in ("iterations", "lr", "r_bn", "batch_size", "jitter", "seed", "amp", "image_format"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.teacher:
        teacher = load_checkpoint(create_model(args.teacher_model, train.num_classes, train.image_size[0]), args.teacher)
    else:  # train one as `fastccfs run` does (its recipe for the dataset), keeping it in OUT/
        run_cfg = resolve_run_config(args.dataset, args.ipc, None, {"teacher_model": args.teacher_model,
                                                                    "seed": cfg.seed})
        out.mkdir(parents=True, exist_ok=True)
        teacher, _ = stage_teacher(Context(run_cfg, out, train, stores["test"], device, not args.quiet))
    distill(teacher, train.classes, args.ipc, train.image_size[0], train.mean, train.std, cfg, out, device,
            progress=not args.quiet)
    print(f"wrote {args.ipc} images per class to {out}/ (new000/class000_id000.{cfg.image_format}, distilled.npz)")


def _bench(args) -> None:
    from fastccfs.atomic import write_json
    from fastccfs.bench import bench_curriculum, format_table

    result = bench_curriculum(args.dataset, args.ipc, args.model, args.epochs, args.root, args.cache, args.alpha,
                              args.seed, args.device, args.teacher, args.scores, args.inference,
                              progress=not args.quiet)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)


def _report(args) -> None:
    from fastccfs.report import build_report

    print(f"wrote {build_report(args.run_dirs[0], others=args.run_dirs[1:], cache=args.cache)}")


def _add_run_settings(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (--teacher-lr for teacher_lr, …), defaults from configs/."""
    from dataclasses import fields

    from fastccfs.config import RunConfig

    for f in fields(RunConfig):
        if f.name in ("dataset", "ipc"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.type.__name__ if isinstance(f.type, type) else str(f.type)  # "int", "float | None", …
        if kind == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif "list" in kind:
            p.add_argument(flag, dest=f.name, default=None, help="comma-separated")
        else:
            conv = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, dest=f.name, type=conv, default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastccfs", description="Fast CCFS for high-IPC dataset distillation.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="decode a dataset once into the store that every loader reads")
    p.add_argument("dataset", help="cifar10, cifar100, tiny-imagenet, demo, or a path to an ImageFolder tree/zip or .npz")
    p.add_argument("--root", default=".", help="folder holding the dataset's archive or extracted folder (default: .)")
    p.add_argument("--cache", default=None, help="store folder (default: $FASTCCFS_CACHE or ~/.cache/fastccfs)")
    p.add_argument("--download", action="store_true", help="fetch the official archive into --root if it is missing")
    p.add_argument("--size", type=int, default=None, help="resize every image to SIZE×SIZE (shorter side, centre crop)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--to", choices=["ffcv", "dali"], default=None,
                   help="also write the store as an FFCV .beton or as DALI's per-sample files, next to it")
    p.add_argument("--pages", choices=["raw", "jpg"], default="raw",
                   help="with --to: raw pixels (default, measured faster at 32–64 px) or JPEG")
    p.add_argument("--jpeg-quality", type=int, default=90, help="with --to … --pages jpg")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_convert)

    p = sub.add_parser("run", help="CCFS end to end: teacher, scores, curriculum phases, evaluation",
                       description="Every setting defaults to configs/run.yaml, then configs/<dataset>.yaml and its "
                                   "IPC preset, then --config FILE, then these flags.")
    p.add_argument("dataset", help="cifar10, cifar100, tiny-imagenet, demo, or a path (as for convert)")
    p.add_argument("--ipc", type=int, default=None, help="images per class of the final set")
    p.add_argument("--out", default=None, help="run directory (default runs/<dataset>-ipc<N>-<time>); resumable")
    p.add_argument("--config", default=None, help="a YAML file of settings")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if present)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_run_settings(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("distill", help="recover a distilled set from a teacher (CDA), in the SRe²L/CDA layout",
                       description="Defaults per dataset: configs/distill.yaml.")
    p.add_argument("dataset", help="cifar10, cifar100, tiny-imagenet, demo, or a path (as for convert)")
    p.add_argument("--ipc", type=int, required=True, help="images per class to recover")
    p.add_argument("--teacher", default=None, help="teacher checkpoint; without it one is trained into --out")
    p.add_argument("--teacher-model", default="resnet18", help="the teacher's architecture (needs BatchNorm)")
    p.add_argument("--out", default=None, help="output folder (default distilled/<dataset>-ipc<N>); resumable")
    p.add_argument("--root", default=".")
    p.add_argument("--cache", default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--r-bn", dest="r_bn", type=float, default=None, help="weight of the BN-statistics term")
    p.add_argument("--batch-size", type=int, default=None, help="images optimised together (mixed classes)")
    p.add_argument("--jitter", type=int, default=None, help="random shift in pixels")
    p.add_argument("--format", dest="image_format", choices=["png", "jpg"], default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default=None,
                   help="bf16 autocast: auto (CUDA only), bf16, off")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_distill)

    p = sub.add_parser("bench", help="benchmarks; `bench curriculum`: one CCFS phase vs a reference-style path")
    bench = p.add_subparsers(dest="bench", required=True)
    p = bench.add_parser("curriculum", help="one phase by fastccfs and by the reference's way, per-stage ratios")
    p.add_argument("dataset")
    p.add_argument("--ipc", type=int, required=True)
    p.add_argument("--model", default="convnet", help="resnet18, convnet, … (filter and teacher)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--alpha", type=float, default=0.2)
    p.add_argument("--json", default=None, help="write the result to this file")
    p.add_argument("--teacher", default=None, help="a checkpoint (default: an untrained teacher)")
    p.add_argument("--scores", default=None, help="score file (default: seeded random scores)")
    p.add_argument("--inference", default="needed", choices=("needed", "all"),
                   help="fastccfs's side: predict only what the fine stage can reach (default) or the whole split")
    p.add_argument("--root", default=".")
    p.add_argument("--cache", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_bench)

    p = sub.add_parser("report", help="write RUN_DIR/report.html (figures embedded) and its PNG figures")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the run; more runs add a comparison table")
    p.add_argument("--cache", default=None, help="where the dataset's store is (for the image grids)")
    p.set_defaults(func=_report)

    p = sub.add_parser("export", help="write a run's synthetic set as an ImageFolder of PNGs")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--root", default=".", help="the dataset's --root, if the store must be rebuilt")
    p.add_argument("--cache", default=None)
    p.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"fastccfs: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastccfs: interrupted", file=sys.stderr)
        return 130
    return 0
