"""The run report: every section, decodable embedded figures, the run's own numbers, missing stages."""
import base64
import io
import json
import re
import shutil

from PIL import Image

from fastccfs.cli import main


def embedded(page: str) -> dict:
    return json.loads(re.search(r"id='report-data'>(.*?)</script>", page, re.S).group(1))


def images(page: str) -> list:
    return [Image.open(io.BytesIO(base64.b64decode(b64)))
            for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_run_writes_a_full_report(own_run):
    page = (own_run / "report.html").read_text()
    for heading in ("Settings", "Teacher", "Phases and timings", "Evaluation"):
        assert f"<h2>{heading}</h2>" in page
    assert "Missing" not in page
    figures = images(page)
    # wall-clock, filter accuracy, difficulty, three phase grids (no distilled part: --init random)
    assert len(figures) == 6 and all(im.size[0] > 100 and im.size[1] > 100 for im in figures)
    for name in ("fig_filter_accuracy.png", "fig_difficulty.png", "fig_phase_1_samples.png"):
        assert Image.open(own_run / name).size[0] > 100
    assert "started from 40 real images (init random)" in page


def test_report_numbers_are_the_runs_numbers(own_run):
    page = (own_run / "report.html").read_text()
    data = embedded(page)
    phases = json.loads((own_run / "phases.json").read_text())
    evaluation = json.loads((own_run / "eval.json").read_text())
    assert data["phases"] == phases and data["eval"] == evaluation
    for p in phases:
        assert f"<td>{100 * p['filter_test_acc']:.2f}</td>" in page
        assert f"<td>{1000 * p['seconds']['selection']:.1f}</td>" in page
    r = evaluation["models"]["convnet_bn"]
    assert f"{100 * r['final_epoch_acc']['mean']:.2f} ± {100 * r['final_epoch_acc']['std']:.2f}" in page


def test_a_run_missing_stages_gets_a_report_of_what_exists(own_run, tmp_path, cache):
    partial = tmp_path / "partial"
    shutil.copytree(own_run, partial)
    for name in ("eval.json", "phases.json", "phase_3.json", "phase_3.npz", "report.html"):
        (partial / name).unlink()
    assert main(["report", str(partial), "--cache", str(cache)]) == 0
    page = (partial / "report.html").read_text()
    data = embedded(page)
    assert [p["phase"] for p in data["phases"]] == [1, 2]
    assert "<h2>Missing</h2>" in page and "eval.json: the evaluation has not finished" in page
    assert len(images(page)) == 5  # wall-clock, accuracy, difficulty, two phase grids


def test_report_compares_several_runs_without_touching_their_pages(own_run, tmp_path, cache):
    other = tmp_path / "other"
    shutil.copytree(own_run, other)
    before = (own_run / "report.html").read_bytes()
    assert main(["report", str(own_run), str(other)]) == 0
    assert (own_run / "report.html").read_bytes() == before  # each run's own page is left as it is
    page = (own_run / "comparison.html").read_text()
    assert page.count("<td>convnet_bn</td>") >= 2
    for column in ("IPC", "α", "epochs", "eval models"):
        assert f"<th>{column}</th>" in page
    runs = embedded(page)["runs"]
    assert [r["config"]["ipc"] for r in runs] == [20, 20] and runs[1]["run"] == str(other)


def test_report_shows_settings_readably_and_the_wall_clock(own_run):
    page = (own_run / "report.html").read_text()
    assert "<td>eval_models</td><td>convnet_bn</td>" in page and "['convnet_bn']" not in page
    assert "<td>teacher</td><td>none</td>" in page and "None" not in page.split("report-data")[0]
    assert "<h2>Wall-clock</h2>" in page and "<td>phase_1.train</td>" in page
    stages = embedded(page)["timings"]["stages"]
    assert {"convert", "teacher", "phase_1.train", "phase_2.inference", "phase_3.selection", "evaluation"} <= set(stages)
