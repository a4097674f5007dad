"""The `fastccfs` command. Every user error ends as one line on stderr and exit code 2 (`--debug`: traceback)."""
from __future__ import annotations

import argparse
import errno
import signal
import sys

from fastccfs.config import AMP_MODES
from fastccfs.datasets import dataset_help
from fastccfs.errors import UserError
from fastccfs.rundir import Layout


def _convert(args) -> None:
    from fastccfs.store import convert

    if args.to:  # before decoding anything
        from fastccfs.formats import form_of

        form_of(args.to)

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

    from fastccfs.api import run
    from fastccfs.config import RunConfig

    settings = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name not in ("dataset", "ipc")}
    start = time.perf_counter()
    if args.plan:  # printed by the pipeline; nothing written
        run(args.dataset, args.ipc, args.out, config=args.config, device=args.device, progress=True, plan=True,
            **settings)
        return
    result = run(args.dataset, args.ipc, args.out, config=args.config, device=args.device,
                 progress=not args.quiet, **settings)
    from fastccfs import distributed

    if not distributed.is_main():  # under torchrun rank 0 prints the summary
        return
    cfg, out = result.config, result.out
    print(f"\n{cfg['dataset']} IPC {cfg['ipc']}, {cfg['method']}: {len(result.selected)} real images selected → "
          f"{out} ({time.perf_counter() - start:.0f} s)")
    if result.report.is_file():
        print(f"report: {result.report}")
    if result.evaluation["models"]:
        print(f"{'model':<14} {'final-epoch acc':>20} {'max last 20% acc':>20}")
        for name, r in result.evaluation["models"].items():
            cells = [f"{100 * r[k]['mean']:.2f} ± {100 * r[k]['std']:.2f}" for k in ("final_epoch_acc", "max_last_20pct_acc")]
            print(f"{name:<14} {cells[0]:>20} {cells[1]:>20}   ({r['runs']} run(s))")


def _export(args) -> None:
    from pathlib import Path

    from fastccfs.config import RunConfig
    from fastccfs.store import convert
    from fastccfs.synthetic import SyntheticSet, check_export_target, export_imagefolder
    import yaml

    check_export_target(args.out)  # before the store is opened or rebuilt
    run_dir = Path(args.run_dir)
    if not (run_dir / Layout.SYNTHETIC).is_file():
        raise UserError(f"{run_dir} has no synthetic_set.npz: the run has not finished its selection")
    cfg = RunConfig(**yaml.safe_load((run_dir / Layout.CONFIG).read_text()))
    store = convert(cfg.dataset, args.root, args.cache, progress=False)["train"]
    out = export_imagefolder(SyntheticSet.load(run_dir / Layout.SYNTHETIC), store, args.out)
    print(f"wrote {out}")


def _distill(args) -> None:
    from fastccfs.api import distill

    options = {name: getattr(args, name) for name in ("iterations", "lr", "r_bn", "batch_size", "jitter", "seed",
                                                      "amp", "image_format")}
    out = distill(args.dataset, args.ipc, args.out, teacher=args.teacher, teacher_model=args.teacher_model,
                  root=args.root, cache=args.cache, device=args.device, progress=not args.quiet, **options)
    from fastccfs import distributed

    if distributed.is_main():
        print(f"wrote {args.ipc} images per class to {out}/ (new000/class000_id000.*, distilled.npz)")


def _bench(args) -> None:
    from fastccfs.atomic import write_json
    from fastccfs.bench import bench_curriculum, format_table

    result = bench_curriculum(args.dataset, args.ipc, model=args.model, phase=args.phase, epochs=args.epochs,
                              measure_epochs=args.measure_epochs, teacher_path=args.teacher,
                              teacher_model=args.teacher_model, teacher_epochs=args.teacher_epochs,
                              save_teacher=args.save_teacher, scores_path=args.scores, root=args.root,
                              cache=args.cache, seed=args.seed, device=args.device, amp=args.amp,
                              progress=not args.quiet)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)


def _bench_whole(args) -> None:
    from fastccfs.atomic import write_json
    from fastccfs.bench_whole import bench_whole, format_whole

    result = bench_whole(args.dataset, args.ipc, model=args.model, measure_epochs=args.measure_epochs,
                         teacher_path=args.teacher, teacher_model=args.teacher_model, scores_path=args.scores,
                         root=args.root, cache=args.cache, work=args.work, seed=args.seed, device=args.device,
                         progress=not args.quiet)
    print(format_whole(result))
    if args.json:
        write_json(args.json, result)


def _bench_run(args) -> None:
    """The whole pipeline at the given settings; its timings.json as a table. Without --out the run goes to
    a temporary folder that is removed afterwards."""
    import json
    import tempfile
    from dataclasses import fields

    from fastccfs.api import run
    from fastccfs.bench import format_timings
    from fastccfs.config import RunConfig

    from fastccfs import distributed

    if distributed.launched() and not args.out:
        raise UserError("under torchrun, bench run needs --out DIR (one run directory that every process shares)")
    settings = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name not in ("dataset", "ipc")}
    with tempfile.TemporaryDirectory(prefix="fastccfs-bench-") as tmp:
        result = run(args.dataset, args.ipc, args.out or f"{tmp}/run", config=args.config, device=args.device,
                     progress=not args.quiet, **settings)
        timings = json.loads((result.out / Layout.TIMINGS).read_text())
    if not distributed.is_main():
        return
    print(format_timings(timings))
    if args.json:
        from fastccfs.atomic import write_json

        write_json(args.json, timings)


def _report(args) -> None:
    from fastccfs.report import build_report

    if len(args.run_dirs) > 1:
        from fastccfs.report import build_comparison

        print(f"wrote {build_comparison(args.run_dirs)}")
    else:
        print(f"wrote {build_report(args.run_dirs[0], cache=args.cache)}")


def _add_run_settings(p: argparse.ArgumentParser, defaults: dict, where: str, helping: bool) -> None:
    """One flag per RunConfig field (--teacher-lr for teacher_lr, …) with its help line, its choices and
    the default it resolves to (WHERE: RunConfig's defaults, or the dataset's presets when the dataset is
    given), in the groups of fastccfs.config.GROUPS.
    Choices that a registry holds (models, backends, rules, methods) are listed when help is asked for
    (HELPING): reading the model registry imports torch, which other commands need not wait for."""
    from dataclasses import fields

    from fastccfs.config import GROUPS, RANGES, RunConfig, choices_of, default_of

    groups = {name: p.add_argument_group(f"settings: {group}") for group, names in GROUPS.items() for name in names}
    for f in fields(RunConfig):
        if f.name in ("dataset", "ipc"):
            continue
        add = groups[f.name].add_argument
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)  # "int", "float | None", "list[str]", …
        registered = isinstance(f.metadata.get("choices"), str)
        choices = choices_of(f.name) if helping or not registered else None
        default = defaults[f.name] if f.name in defaults else default_of(f)
        shown = ",".join(default) if isinstance(default, list) else "none" if default is None else default
        allowed = f" ({{{'|'.join(choices)}}})" if choices else f" ({RANGES[f.name]})" if f.name in RANGES else ""
        text = f.metadata["help"] + allowed + f" [{where}: {shown}]"
        text = text.replace("%", "%%")
        if kind == "bool":
            add(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif "list" in kind:
            add(flag, dest=f.name, default=None, metavar="A,B", help=text)
        else:
            conv = int if kind.startswith("int") else float if kind.startswith("float") else str
            metavar = (f.metadata["choices"].upper() if registered else "{" + ",".join(choices) + "}" if choices
                       else "N" if conv is int else "X" if conv is float else None)
            add(flag, dest=f.name, type=conv, default=None, metavar=metavar, help=text)


def _add_bench_common(p: argparse.ArgumentParser) -> None:
    """The options every side-by-side benchmark takes."""
    p.add_argument("--json", default=None, help="write the result to this file [default: print only]")
    p.add_argument("--root", default=".", help="folder holding the dataset [default: .]")
    p.add_argument("--cache", default=None, help="store folder [default: $FASTCCFS_CACHE or ~/.cache/fastccfs]")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="[default: 0]")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu [default: cuda if present]")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_run_arguments(p: argparse.ArgumentParser, argv: list[str] | None, out_help: str) -> None:
    p.add_argument("dataset", help=dataset_help())
    p.add_argument("--ipc", type=int, default=None, metavar="N",
                   help="images per class of the final set (default: the dataset's preset, if it has one)")
    p.add_argument("--out", default=None, help=out_help)
    p.add_argument("--config", default=None, help="a YAML file of settings")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if present)")
    p.add_argument("--quiet", action="store_true", help="no progress output (run.log still records the run)")
    argv = argv or []
    _add_run_settings(p, *_help_defaults(argv), helping="-h" in argv or "--help" in argv)


def _help_defaults(argv: list[str]) -> tuple[dict, str]:
    """Defaults for `run --help` (and `bench run --help`): those of the dataset (and --ipc) named before
    --help, else RunConfig's."""
    from fastccfs.config import config_defaults

    if argv[:2] == ["bench", "run"]:
        argv = argv[1:]
    dataset = argv[1] if len(argv) > 1 and argv[0] == "run" and not argv[1].startswith("-") else None
    ipc = None
    if "--ipc" in argv[:-1]:
        try:
            ipc = int(argv[argv.index("--ipc") + 1])
        except ValueError:
            pass
    return config_defaults(dataset, ipc), (dataset + (f" IPC {ipc}" if ipc else "")) if dataset else "default"


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="fastccfs", description="Fast CCFS for high-IPC dataset distillation.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="decode a dataset once into the store that every loader reads")
    p.add_argument("dataset", help=dataset_help())
    p.add_argument("--root", default=".", help="folder holding the dataset's archive or extracted folder (default: .)")
    p.add_argument("--cache", default=None, help="store folder (default: $FASTCCFS_CACHE or ~/.cache/fastccfs)")
    p.add_argument("--download", action="store_true", help="fetch the official archive into --root if it is missing")
    p.add_argument("--size", type=int, default=None, help="resize every image to SIZE×SIZE (shorter side, centre crop)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--to", default=None, metavar="BACKEND",
                   help="also write the store in that loader backend's own form, next to it (e.g. ffcv: an FFCV "
                        ".beton; dali: DALI's per-sample files)")
    p.add_argument("--pages", choices=["raw", "jpg"], default="raw",
                   help="with --to: raw pixels (default, measured faster at 32–64 px) or JPEG")
    p.add_argument("--jpeg-quality", type=int, default=90, help="with --to … --pages jpg")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_convert, subparser=p)

    p = sub.add_parser("run", help="CCFS end to end: teacher, scores, curriculum phases, evaluation",
                       description="Every setting defaults to fastccfs.config.RunConfig's, then configs/<dataset>.yaml and its "
                                   "IPC preset, then --config FILE, then these flags.")
    _add_run_arguments(p, argv, "run directory (default runs/<dataset>-ipc<N>-<time>); resumable")
    p.add_argument("--plan", action="store_true", help="print the plan (stages, image-epochs, estimated time on this "
                                                       "machine) and exit; the run folder is not touched")
    p.set_defaults(func=_run, subparser=p)

    p = sub.add_parser("distill", help="recover a distilled set from a teacher (CDA), in the SRe²L/CDA layout",
                       description="Defaults per dataset: configs/distill.yaml.")
    p.add_argument("dataset", help=dataset_help())
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
    p.add_argument("--amp", choices=AMP_MODES, default=None,
                   help="bf16 autocast: auto (CUDA only), bf16, off")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_distill, subparser=p)

    p = sub.add_parser("bench", help="benchmarks: `bench whole` (every stage of a run vs the reference's way), "
                                     "`bench curriculum` (one CCFS phase vs a reference-style path), "
                                     "`bench run` (the pipeline's wall-clock per stage)")
    bench = p.add_subparsers(dest="bench", required=True)
    p = bench.add_parser("curriculum", help="one phase by fastccfs and by the reference's way, per-stage ratios",
                         description="One CCFS phase at the dataset preset's settings (IPC, α, batch rule, lr, "
                                     "epochs) with a real teacher, by fastccfs and by a reference-style path.")
    p.add_argument("dataset", help=dataset_help())
    p.add_argument("--ipc", type=int, required=True, metavar="N", help="images per class of the final set")
    p.add_argument("--model", default=None, metavar="MODEL", help="filter architecture (a registered model, as for "
                                                                  "`run --model`) [default: the preset's]")
    p.add_argument("--phase", type=int, default=1, metavar="J",
                   help="which phase: its starting set is as large as phase J's in a run [default: 1]")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="filter epochs [default: the preset's]")
    p.add_argument("--measure-epochs", type=int, default=None, metavar="M",
                   help="train M (≥ 5) of them and scale both sides' training time by epochs/M [default: all]")
    p.add_argument("--teacher", default=None, help="a teacher checkpoint (needs --scores) [default: train one here]")
    p.add_argument("--teacher-model", default=None, metavar="MODEL",
                   help="the teacher's architecture [default: the preset's]")
    p.add_argument("--teacher-epochs", type=int, default=None, metavar="N",
                   help="epochs of a teacher trained here [default: the teacher recipe's]")
    p.add_argument("--save-teacher", default=None, metavar="PATH", help="keep the teacher trained here")
    p.add_argument("--scores", default=None, help="score file [default: forgetting counted by the teacher trained here]")
    p.add_argument("--amp", default="auto", choices=AMP_MODES, help="[default: auto]")
    _add_bench_common(p)
    p.set_defaults(func=_bench, subparser=p)

    p = bench.add_parser("whole", help="every stage of a run (phases, evaluation) by fastccfs and by the reference's "
                                       "way, side by side, extrapolated from M epochs per training",
                         description="The whole CCFS run at the dataset preset's settings with a given teacher and "
                                     "score file: each phase at its set size and every evaluation run, fastccfs "
                                     "(both --soft-labels modes, --eval-jobs auto) against the reference's way.")
    p.add_argument("dataset", help=dataset_help())
    p.add_argument("--ipc", type=int, required=True, metavar="N", help="images per class of the final set")
    p.add_argument("--model", default=None, metavar="MODEL", help="filter and evaluation model [default: the preset's]")
    p.add_argument("--measure-epochs", type=int, default=5, metavar="M",
                   help="epochs measured per training, scaled to the preset's (5 keeps the test passes' share of "
                        "an evaluation run: epochs > 0.8·epochs) [default: 5]")
    p.add_argument("--teacher", required=True, help="a teacher checkpoint")
    p.add_argument("--teacher-model", default=None, metavar="MODEL", help="its architecture [default: the preset's]")
    p.add_argument("--scores", required=True, help="score file (e.g. the published forgetting scores)")
    p.add_argument("--work", default=None, help="folder for the measurements so far (a killed benchmark resumes) "
                                                "[default: CACHE/bench-whole-DATASET-IPC-MODEL]")
    _add_bench_common(p)
    p.set_defaults(func=_bench_whole, subparser=p)

    p = bench.add_parser("run", help="the whole pipeline at given settings; prints its wall-clock per stage",
                         description="`fastccfs run` with the same settings, then its timings.json as a table.")
    _add_run_arguments(p, argv, "run directory [default: a temporary folder, removed afterwards]")
    p.add_argument("--json", default=None, help="also write timings.json here")
    p.set_defaults(func=_bench_run, subparser=p)

    p = sub.add_parser("report", help="write RUN_DIR/report.html (figures embedded) and its PNG figures; "
                                      "several runs: a comparison page")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a run (its report.html is rebuilt); several runs: RUN_DIR1/comparison.html compares them, "
                        "leaving each run's own report as it is")
    p.add_argument("--cache", default=None, help="where the dataset's store is (for the image grids)")
    p.set_defaults(func=_report, subparser=p)

    p = sub.add_parser("export", help="write a run's synthetic set as an ImageFolder of PNGs")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--root", default=".", help="the dataset's --root, if the store must be rebuilt")
    p.add_argument("--cache", default=None)
    p.set_defaults(func=_export, subparser=p)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that every `finally` removes its temporaries (as Ctrl-C)."""


def _terminate(signum, frame):
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    """A flag's bad value or an unknown flag: one line (the fault and where the options are listed), exit 2;
    not argparse's usage block, where the fault is the last of forty lines."""

    def error(self, message):
        self.exit(2, f"fastccfs: error: {self.prog}: {message} (`{self.prog} --help` lists the options)\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            args.subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as e:  # --help (0) or a bad flag (2, one line said why)
        return int(e.code or 0)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args.func(args)
    except Terminated:
        print("fastccfs: terminated (SIGTERM); what was half-written is removed, a re-run resumes", file=sys.stderr)
        return 143
    except UserError as e:
        if args.debug:
            raise
        print(f"fastccfs: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno != errno.ENOSPC or args.debug:
            raise
        # Everything is written to a temporary path first: what was half-written is gone already.
        print(f"fastccfs: error: the disk is full (writing {e.filename or 'a file'}): free some space and run the "
              "same command again; a run resumes after its last finished stage", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastccfs: interrupted", file=sys.stderr)
        return 130
    return 0
