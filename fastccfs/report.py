"""The run report: one self-contained HTML page (figures embedded) plus the figures as PNGs beside it.

What the paper shows to judge a selection: the filter's accuracy per phase (Fig. 4a), the difficulty
of the samples chosen in each phase (Fig. 4b), the chosen images themselves (Fig. 4c, Figs. 6–11),
and the evaluation. The numbers the page shows are embedded in it as JSON (id "report-data"),
copied from phases.json and eval.json, so what a reader sees can be checked against the run.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import numpy as np
import yaml

from fastccfs.atomic import keep_checksums, write_bytes, write_text
from fastccfs.rundir import Layout

GRID_CLASSES = 10  # image grids show at most this many classes (the first ones)
GRID_PER_CLASS = 8


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _readable(value) -> str:
    """A setting as a person writes it: lists comma-separated, None as "none", booleans as yes/no."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def figure_timings(stages: dict) -> bytes:
    """Wall-clock per stage, one horizontal bar each, in the order they ran."""
    import matplotlib.pyplot as plt

    names = list(stages)
    fig, ax = plt.subplots(figsize=(5.5, 0.32 * len(names) + 1.0))
    ax.barh(range(len(names)), [stages[n] for n in names], color="#4a7fb5")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title="Wall-clock per stage")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_filter_accuracy(phases: list[dict]) -> bytes:
    import matplotlib.pyplot as plt

    trained = [p for p in phases if "filter_train_acc" in p]  # only with --inference all
    tested = [p for p in phases if "filter_test_acc" in p]  # absent with --no-filter-test
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    x = sorted({p["phase"] for p in trained + tested})
    if trained:
        ax.plot([p["phase"] for p in trained], [100 * p["filter_train_acc"] for p in trained], "o-",
                label="train split")
    if tested:
        ax.plot([p["phase"] for p in tested], [100 * p["filter_test_acc"] for p in tested], "s-", label="test split")
    ax.set(xlabel="phase", ylabel="filter accuracy (%)", title="Filter accuracy per phase (Fig. 4a)")
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def figure_difficulty(per_phase: dict[int, np.ndarray], score: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    phases = sorted(per_phase)
    data = [per_phase[j] for j in phases]
    if all(len(d) > 1 for d in data):
        ax.violinplot(data, positions=phases, showmedians=True)
    ax.boxplot(data, positions=phases, widths=0.15, showfliers=False)
    ax.set(xlabel="phase", ylabel=f"difficulty ({score}; higher = harder)",
           title="Difficulty of the chosen samples (Fig. 4b)")
    ax.set_xticks(phases)
    ax.grid(alpha=0.3)
    return _png(fig)


def figure_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], title: str) -> bytes:
    """Rows = classes (at most GRID_CLASSES), columns = up to GRID_PER_CLASS images in the given order,
    tiled into one picture (one axes, not one per image: 10× faster to draw)."""
    import matplotlib.pyplot as plt

    classes = [c for c in range(len(class_names)) if (labels == c).any()][:GRID_CLASSES]
    cols = max([min(GRID_PER_CLASS, int((labels == c).sum())) for c in classes] + [1])
    h, w = images.shape[1:3]
    gap = max(1, h // 16)
    mosaic = np.full((len(classes) * (h + gap), cols * (w + gap), 3), 255, np.uint8)
    for r, c in enumerate(classes):
        for k, i in enumerate(np.flatnonzero(labels == c)[:cols]):
            mosaic[r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = images[i]
    fig, ax = plt.subplots(figsize=(cols * 0.9 + 1.2, len(classes) * 0.9 + 0.4))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(classes))], [class_names[c] for c in classes],
                  fontsize=7)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _median_picks(indices: np.ndarray, difficulty: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class, the chosen samples closest to that class's median chosen difficulty (Fig. 4c)."""
    out = []
    for c in np.unique(labels[indices]):
        members = indices[labels[indices] == c]
        d = difficulty[labels[indices] == c]
        order = np.lexsort((members, np.abs(d - np.median(d))))
        out.append(members[order[:GRID_PER_CLASS]])
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _store_for(cfg: dict, cache):
    from fastccfs.errors import UserError
    from fastccfs.store import find_store

    try:
        return find_store(cfg["dataset"], "train", cache)
    except UserError:
        return None


def build_report(run_dir: str | os.PathLike, store=None, cache=None) -> Path:
    """Write RUN_DIR/report.html and its PNG figures; returns the page's path."""
    run = gather(Path(run_dir), store, cache)
    sections, missing = report_sections(run)
    with keep_checksums(run["dir"]):  # the run's record of what it wrote stays true
        for name, (caption, png) in report_figures(run).items():
            write_bytes(run["dir"] / name, png)
            sections.append(f"<figure>{_img_tag(png, caption)}<figcaption>{html.escape(caption)} "
                            f"({name})</figcaption></figure>")
        if missing:
            sections.append("<h2>Missing</h2><ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul>")
        data = {"config": run["cfg"], "teacher": run["teacher"], "phases": run["phases"], "eval": run["evaluation"],
                "timings": run["timings"], "missing": missing}
        path = run["dir"] / Layout.REPORT
        write_text(path, _page(run["title"], sections, data))
    return path


def gather(run_dir: Path, store=None, cache=None) -> dict:
    """What a run directory holds, read once: settings, records, each phase's picks, the starting set."""
    cfg = yaml.safe_load((run_dir / Layout.CONFIG).read_text()) if (run_dir / Layout.CONFIG).is_file() else None
    if cfg is None:
        from fastccfs.errors import UserError

        raise UserError(f"{run_dir} is not a fastccfs run directory (no config.yaml)")
    phases = _read_json(run_dir / Layout.PHASES)
    if phases is None:  # the curriculum did not finish: show the phases that did
        phases = [p for j in range(1, cfg.get("phases", 0) + 1)
                  if (p := _read_json(run_dir / f"phase_{j}.json")) is not None] or None
    picks = {}  # phase → (indices, difficulty) of the phases whose files hold difficulties
    for p in phases or []:
        npz = run_dir / f"phase_{p['phase']}.npz"
        if npz.is_file():
            with np.load(npz) as data:
                if "difficulty" in data:
                    picks[p["phase"]] = (data["indices"], data["difficulty"])
    start = None
    if (run_dir / Layout.START).is_file():
        with np.load(run_dir / Layout.START) as data:
            start = {key: data[key] for key in data.files}
    return {"dir": run_dir, "cfg": cfg, "phases": phases, "picks": picks, "start": start,
            "evaluation": _read_json(run_dir / Layout.EVAL), "teacher": _read_json(run_dir / Layout.TEACHER_INFO),
            "timings": _read_json(run_dir / Layout.TIMINGS),
            "store": store if store is not None else _store_for(cfg, cache),
            "title": f"CCFS run — {cfg['dataset']}, IPC {cfg['ipc']}, {cfg['method']}"}


def report_sections(run: dict) -> tuple[list[str], list[str]]:
    """The page's HTML sections (settings, wall-clock, teacher, phases, evaluation), and what is missing."""
    cfg, phases, teacher, evaluation, timings = run["cfg"], run["phases"], run["teacher"], run["evaluation"], run["timings"]
    sections, missing = [f"<h1>{html.escape(run['title'])}</h1><p>{html.escape(str(run['dir'].resolve()))}</p>"], []
    sections.append("<h2>Settings</h2>" + _table(["setting", "value"], [[k, _readable(v)] for k, v in cfg.items()]))
    if timings and timings.get("stages"):
        stages = timings["stages"]
        sections.append(f"<h2>Wall-clock</h2><p>Total {_duration(sum(stages.values()))} over the stages below "
                        "(a resumed run keeps the times of the stages it did not redo).</p>"
                        + _table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in stages.items()]))
    if teacher:
        sections.append("<h2>Teacher</h2>" + _table(
            ["train accuracy (%)", "test accuracy (%)", "checkpoint"],
            [[_pct(teacher["train_acc"]), _pct(teacher["test_acc"]), teacher["checkpoint"]]]))
    else:
        missing.append("teacher.json: the teacher stage has not finished")
    if phases:
        rows = []
        for p in phases:
            s = p["seconds"]
            rows.append([p["phase"], p["set_size"], p["k_per_class"], p["selected"], p["filled"],
                         _pct(p.get("filter_train_acc")), _pct(p.get("filter_test_acc")), p.get("inferred", "–"),
                         p.get("misclassified", p.get("inferred_misclassified", "–")),
                         f"{s['train']:.1f}", f"{s['inference']:.1f}", f"{1000 * s['selection']:.1f}",
                         f"{p['train_images_per_s']:.0f}" if "train_images_per_s" in p else "–"])
        sections.append("<h2>Phases and timings</h2>" + _table(
            ["phase", "set size", "k per class", "selected", "filled", "filter train acc (%)", "filter test acc (%)",
             "images inferred", "misclassified (of those)", "train s", "inference s", "selection ms",
             "train images/s"], rows))
        if run["store"] is None:
            missing.append("image grids of the chosen samples: the dataset's store was not found "
                           "(run `fastccfs convert` or pass --cache)")
    else:
        missing.append("phases.json: no curriculum phase has finished" if cfg["method"] == "ccfs"
                       else f"no curriculum phases: method {cfg['method']} selects in one step")
    start = run["start"]
    if start is not None and not len(start["distilled_labels"]):
        sections.append(f"<p>No distilled part: the run started from "
                        f"{len(start['real_indices'])} real images (init {html.escape(cfg.get('init', ''))}).</p>")
    if evaluation:
        rows = [[name, f"{_pct(r['final_epoch_acc']['mean'])} ± {_pct(r['final_epoch_acc']['std'])}",
                 f"{_pct(r['max_last_20pct_acc']['mean'])} ± {_pct(r['max_last_20pct_acc']['std'])}", r["runs"]]
                for name, r in evaluation["models"].items()]
        sections.append("<h2>Evaluation</h2><p>Test accuracy (%) of models trained from scratch on the final set "
                        f"({evaluation['set_size']} images) with KD, mean ± std over runs.</p>" + _table(
                            ["model", "final-epoch accuracy", "max over last 20 % of epochs", "runs"], rows))
    else:
        missing.append("eval.json: the evaluation has not finished (or --num-eval 0)")
    return sections, missing


def report_figures(run: dict) -> dict[str, tuple[str, bytes]]:
    """The run's figures as PNGs: file name → (caption, png)."""
    cfg, phases, store, timings, start = run["cfg"], run["phases"], run["store"], run["timings"], run["start"]
    figures = {}
    if timings and timings.get("stages"):
        figures["fig_timings.png"] = ("Wall-clock per stage", figure_timings(timings["stages"]))
    if phases and any("filter_train_acc" in p or "filter_test_acc" in p for p in phases):
        figures["fig_filter_accuracy.png"] = ("Filter accuracy per phase", figure_filter_accuracy(phases))
    if run["picks"]:
        figures["fig_difficulty.png"] = ("Difficulty of the chosen samples", figure_difficulty(
            {j: difficulty for j, (_, difficulty) in run["picks"].items()}, cfg.get("score", "")))
    if store is not None:
        for j, (indices, difficulty) in run["picks"].items():
            if not len(indices):
                continue
            chosen = _median_picks(indices, difficulty, store.labels)
            figures[f"fig_phase_{j}_samples.png"] = (
                f"Phase {j}: chosen samples of median difficulty per class",
                figure_grid(np.asarray(store.images[chosen]), store.labels[chosen], store.classes,
                            f"phase {j}: samples of median difficulty among those chosen"))
    if start is not None and len(start["distilled_labels"]):
        names = store.classes if store is not None else [str(c) for c in range(int(start["distilled_labels"].max()) + 1)]
        figures["fig_distilled.png"] = ("The distilled part", figure_grid(
            start["distilled_images"], start["distilled_labels"], names, "distilled images"))
    return figures


def _page(title: str, sections: list[str], data: dict) -> str:
    # "</" would end the script element early; "<\\/" is the same JSON string.
    embedded = json.dumps(data).replace("</", "<\\/")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
            "th{background:#f3f3f3}figure{display:inline-block;margin:1em}img{max-width:100%}"
            "</style></head><body>" + "\n".join(sections) +
            f"<script type='application/json' id='report-data'>{embedded}</script>"
            "</body></html>")


# Columns of the comparison: what distinguishes runs of this field at a glance.
COMPARED = ("dataset", "ipc", "alpha", "method", "coarse", "fine", "score", "phases", "epochs", "eval_epochs",
            "model", "eval_models", "num_eval", "seed")


def build_comparison(run_dirs) -> Path:
    """RUN_DIRS[0]/comparison.html: one row per run and evaluation model, its settings and accuracies.
    Each run's own report.html is left as it is."""
    from fastccfs.errors import UserError

    dirs = [Path(d) for d in run_dirs]
    rows, data = [], []
    for d in dirs:
        if not (d / Layout.CONFIG).is_file():
            raise UserError(f"{d} is not a fastccfs run directory (no config.yaml)")
        c = yaml.safe_load((d / Layout.CONFIG).read_text())
        e = _read_json(d / Layout.EVAL) or {"models": {}}
        t = (_read_json(d / Layout.TIMINGS) or {}).get("stages", {})
        data.append({"run": str(d), "config": c, "eval": e, "timings": t})
        settings = [_readable(c.get(k)) for k in COMPARED]
        for name, r in list(e["models"].items()) or [("–", None)]:
            rows.append([d.name, *settings, name,
                         f"{_pct(r['final_epoch_acc']['mean'])} ± {_pct(r['final_epoch_acc']['std'])}" if r else "–",
                         f"{_pct(r['max_last_20pct_acc']['mean'])} ± {_pct(r['max_last_20pct_acc']['std'])}" if r else "–",
                         r["runs"] if r else 0, _duration(sum(t.values())) if t else "–"])
    header = ["run", "dataset", "IPC", "α", "method", "coarse", "fine", "score", "J", "epochs", "eval epochs",
              "filter", "eval models", "num eval", "seed", "model", "final-epoch acc (%)", "max last 20 % acc (%)",
              "runs", "wall-clock"]
    title = "CCFS runs compared"
    sections = [f"<h1>{title}</h1>", "<p>Test accuracy (%), mean ± std over each run's evaluation runs.</p>",
                _table(header, rows)]
    path = dirs[0] / Layout.COMPARISON
    with keep_checksums(dirs[0]):
        write_text(path, _page(title, sections, {"runs": data}))
    return path
