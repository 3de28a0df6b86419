"""Report tables and figures."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli

from audioscene.events import Event
from audioscene.metrics import event_f1
from audioscene.report import markdown_table, paper, table3


def test_table3_prints_the_papers_test_and_eval_columns():
    ref = [Event("a.wav", 1.0, 2.0, "Dog")]
    text = markdown_table(table3([("ours", event_f1(ref, ref))]))
    ours, *published = [line for line in text.splitlines() if "ours" in line or "paper:" in line]
    assert "100.00" in ours
    for (name, (test, eval_)), line in zip(paper.TABLE3.items(), published):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == f"paper: {name}"
        assert cells[3:] == ["–" if test is None else f"{test:.2f}", "–" if eval_ is None else f"{eval_:.2f}"]
    assert len(published) == len(paper.TABLE3)


def test_figures_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """A notebook user's backend must survive a plot (the report once called matplotlib.use("Agg"))."""
    script = f"""
import matplotlib, numpy as np
matplotlib.use("svg")
from audioscene.report import plot_activations, plot_logmel
from audioscene.events import Event
rng = np.random.default_rng(0)
logmel = rng.normal(size=(998, 64)).astype(np.float32)
plot_logmel(logmel, {str(tmp_path / "s.png")!r}, events=[Event("a", 1.0, 2.0, "Dog")])
scores = rng.uniform(size=(32, 3))
chosen = plot_activations(logmel, 0.01, np.arange(32) * 0.32, scores, ("a", "b", "c"), {str(tmp_path / "f.png")!r})
assert chosen == [("a", "b", "c")[k] for k in np.argsort(-scores.max(axis=0))[:2]], chosen
print(matplotlib.get_backend())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg"
    for name in ("s.png", "f.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command_regenerates_table2_with_intervals_and_provenance(tiny_run, tiny_data, tmp_path):
    import csv
    import json

    from audioscene.evaluate import evaluate_run

    out = tmp_path / "report"
    result = run_cli("report", "--runs", f"B+att={tiny_run}", "--eval-data", str(tiny_data / "eval"),
                     "--bootstrap", "200", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "B+att (peak, epoch" in result.stdout and "ResNet B + att" in result.stdout
    expected = evaluate_run(tiny_run, tiny_data / "eval", device="cpu", progress=False)
    rows = {row["variant"]: row for row in csv.DictReader(open(out / "table2.csv", encoding="utf-8"))}
    assert set(rows) == {"peak", "avg"}
    for variant in ("peak", "avg"):
        for key in ("mAP", "mAUC", "d_prime"):
            value, low, high = (float(rows[variant][key + s]) for s in ("", "_low", "_high"))
            assert value == pytest.approx(expected.variants[variant].summary[key], abs=1e-6)  # as `evaluate` gives
            assert low <= value <= high
    assert rows["avg"]["paper_row"] == "ResNet B + att (Avg)"
    provenance = json.loads((out / "provenance.json").read_text())
    run = provenance["runs"]["B+att"]
    assert run["n_clips"] == 24 and len(run["clip_list_sha256"]) == 64 and run["epochs"] == 2
    assert provenance["git_commit"] and provenance["bootstrap"]["resamples"] == 200
    assert "<table>" in (out / "index.html").read_text() and (out / "report.md").is_file()
    assert_one_line_error(run_cli("report", "--runs", f"a={tiny_run}", f"a={tiny_run}", "--eval-data",
                                  str(tiny_data / "eval"), "-o", str(tmp_path / "x")), "run names must be unique")


def _dcase_root(tiny_data, root):
    """DCASE 2018 task 4 test and eval splits (released layout) made of the synthetic eval clips."""
    import soundfile as sf

    from audioscene.audio import load

    names = sorted(p.name for p in (tiny_data / "eval" / "audio").glob("*.flac"))
    strong = (tiny_data / "eval" / "strong.tsv").read_text().splitlines()
    for split, chosen in (("test", names[:12]), ("eval", names[12:])):
        (root / "audio" / split).mkdir(parents=True)
        (root / "metadata" / split).mkdir(parents=True)
        for name in chosen:
            sf.write(root / "audio" / split / name.replace(".flac", ".wav"), load(tiny_data / "eval" / "audio" / name),
                     16000)
        rows = [line.replace(".flac", ".wav") for line in strong[1:] if line.split("\t")[0] in chosen]
        (root / "metadata" / split / f"{split}.csv").write_text("\n".join([strong[0], *rows]) + "\n")
    return root


def test_report_adds_tables_3_and_4_on_dcase_test_and_eval(tiny_run, tiny_data, tmp_path):
    import json

    from audioscene.data import dcase2018
    from audioscene.events import read_events_tsv

    root = _dcase_root(tiny_data, tmp_path / "dataset")
    out = tmp_path / "report"
    result = run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"), "--bootstrap", "100",
                     "--dcase", str(root), "--mapping", "broad", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    text = (out / "report.md").read_text()
    assert "median filter + swept thresholds — test split (tuned in-sample" in text
    assert "| median filter + swept thresholds, 0.4 s collar — eval split " in text
    assert "## Table 4 style: per-class event F1 on the test split" in text and "paper: JiaKai" in text
    assert "PSDS1 / PSDS2 in the DCASE 2021 settings over 50 thresholds" in text
    # the eval rows are what sed-eval gives for the events the report wrote
    events = read_events_tsv(out / "sed" / "events_eval_median.tsv")
    scores = event_f1(dcase2018.events(root, "eval"), events, t_collar=0.2, labels=sorted(json.loads(
        (out / "mapping.json").read_text())))
    row = next(line for line in text.splitlines() if line.startswith("| median filter + swept thresholds — eval"))
    assert f"{100 * scores.macro_f1:.2f}" in row
    assert json.loads((out / "mapping.json").read_text())["Cat"][:2] == ["Cat", "Purr"]
    assert (out / "sed" / "figure2_1.png").is_file() and "data:image/png;base64" in (out / "index.html").read_text()
    shown = re.findall(r"!\[(\S+): reference", text)  # Figure 2: a clip per class of the paper's figure
    assert len(shown) >= 2 and len(set(shown)) == len(shown), shown  # none twice
    assert json.loads((out / "provenance.json").read_text())["segmentation"]["mapping"] == "broad"
    # the PSDS inputs are written as psds_eval reads them, and score back to the printed value
    from audioscene.metrics.psds import PSDS1, psds

    folder = out / "sed" / "psds_eval"
    durations = dict(line.split("\t") for line in (folder / "metadata.tsv").read_text().splitlines()[1:])
    points = [read_events_tsv(path) for path in sorted(folder.glob("detections_*.tsv"))]
    assert len(points) == 50
    value = psds(read_events_tsv(folder / "ground_truth.tsv"), points, {k: float(v) for k, v in durations.items()},
                 sorted(json.loads((out / "mapping.json").read_text())), **PSDS1)
    summary = next(line for line in text.splitlines() if line.startswith(f"| {tiny_run.name} ") and "| eval " in line)
    assert f"| {value:.3f} |" in summary


def test_report_page_shows_tables_headings_and_figures_on_a_laptop_screen(tiny_run, tiny_data, tmp_path):
    """Every table of the page (Tables 2-4, the provenance) is a <table>, every section title a
    heading, no Markdown shows through, and nothing scrolls sideways at 1366 px; a screenshot is
    taken as a reader would see it."""
    from helpers import browser_path
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report"
    result = run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"), "--bootstrap", "100",
                     "--dcase", str(_dcase_root(tiny_data, tmp_path / "dataset")), "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path(), args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        problems = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.goto((out / "index.html").as_uri())
        images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
        assert images and all(images)  # Figure 2, inline
        assert page.locator("table").first.locator("tbody tr").count() == 2  # Table 2: peak, Avg
        headings = page.locator("h1, h2").all_inner_texts()
        assert any(h.startswith("Table 3 style") for h in headings) and any(h.startswith("Table 4 style")
                                                                            for h in headings)
        assert "Provenance" in headings
        assert page.locator("table").count() == 5  # Tables 2, 3, the detection summary, 4 and the provenance
        assert page.locator("pre").count() == 0 and "## " not in page.inner_text("body")
        assert page.locator("table").last.locator("td", has_text="bootstrap.resamples").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 1366  # no sideways scrolling
        wrapped = page.evaluate("""[...document.querySelectorAll('td.r')].filter(td => {
            const text = document.createRange(); text.selectNodeContents(td);
            return text.getClientRects().length > 1; }).map(td => td.textContent)""")
        assert wrapped == []  # no number breaks over two lines (Table 4's once did, under long headers)
        assert page.locator("p.legend").count() == 1  # Table 4's short headers spelled out
        assert page.screenshot(path=str(tmp_path / "page.png"), full_page=True)[:8] == b"\x89PNG\r\n\x1a\n"
        browser.close()
    assert problems == []


def test_report_names_missing_inputs_before_any_work(tiny_run, tiny_data, tmp_path):
    started = time.monotonic()
    assert_one_line_error(run_cli("report", "--runs", f"a={tiny_run}", f"b={tmp_path / 'nope'}", "--eval-data",
                                  str(tiny_data / "eval"), "-o", str(tmp_path / "r")), "nope: no such run folder")
    assert_one_line_error(run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tmp_path / "gone"),
                                  "-o", str(tmp_path / "r")), "gone")
    assert_one_line_error(run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"),
                                  "--dcase", str(tmp_path / "no_dataset"), "-o", str(tmp_path / "r")), "no_dataset")
    assert time.monotonic() - started < 60 and not (tmp_path / "r" / "report.md").exists()


def test_the_selection_split_is_named_and_its_labels_flag_checked(tiny_run, tiny_data, tmp_path):
    import shutil

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(tiny_data / "eval", unlabelled)
    rows = (unlabelled / "weak.csv").read_text().splitlines()
    (unlabelled / "weak.csv").write_text("\n".join([rows[0]] + [row.split(",")[0] + "," for row in rows[1:]]) + "\n")
    assert_one_line_error(run_cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_data / "eval"),
                                  "--select-data", str(unlabelled)),
                          f"{unlabelled} (the selection split, --select-data): no class has both")
    assert_one_line_error(run_cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_data / "eval"),
                                  "--select-labels", "x.csv"), "--select-labels labels the --select-data data; give --select-data too")
    assert_one_line_error(run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"),
                                  "--select-labels", "x.csv", "-o", str(tmp_path / "r")), "give --select-data too")
    labels = tmp_path / "select.csv"
    labels.write_text("filename,labels\n" + "\n".join(f"{p.name},Speech" for p in
                                                      sorted((tiny_data / "eval" / "audio").glob("*.flac"))[:3]) + "\n")
    from audioscene.cli import build_parser

    args = build_parser().parse_args(["report", "--runs", str(tiny_run), "--eval-data", "e", "--select-data",
                                      f"folder:{tiny_data / 'eval'}", "--select-labels", str(labels), "-o", "r"])
    assert args.select_labels == str(labels)


def test_a_report_replaces_the_last_one_whole_and_a_failed_one_changes_nothing(tiny_run, tiny_data, tmp_path):
    import shutil

    out = tmp_path / "report"
    args = ["report", "--runs", f"a={tiny_run}", "--eval-data", str(tiny_data / "eval"), "--bootstrap", "100"]
    assert run_cli(*args, "-o", str(out)).returncode == 0
    (out / "sed").mkdir()
    (out / "sed" / "figure2_9.png").write_bytes(b"an earlier report's figure")
    (out / "mapping.json").write_text("{}")
    assert run_cli(*args, "-o", str(out)).returncode == 0
    assert not (out / "sed").exists() and not (out / "mapping.json").exists()  # nothing of the earlier one lingers
    good = (out / "report.md").read_text()
    broken = tmp_path / "broken_eval"
    shutil.copytree(tiny_data / "eval", broken)
    next((broken / "audio").glob("*.flac")).write_bytes(b"not audio")
    result = run_cli("report", "--runs", f"a={tiny_run}", "--eval-data", str(broken), "--bootstrap", "100", "-o",
                     str(out))
    assert result.returncode != 0 and (out / "report.md").read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == []  # no staging left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert_one_line_error(run_cli(*args, "-o", str(tmp_path / "notes")), "not empty and not a report folder")
    assert_one_line_error(run_cli(*args, "-o", str(tmp_path / "notes" / "todo.txt")), "todo.txt: is a file")


def test_run_names_are_escaped_in_markdown_and_refused_when_they_cannot_name_files(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "report"
    name = "B|att <script>alert(1)"
    result = run_cli("report", "--runs", f"{name}={tiny_run}", "--eval-data", str(tiny_data / "eval"),
                     "--bootstrap", "100", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    text = (out / "report.md").read_text()
    assert "B\\|att &lt;script&gt;alert(1)" in text and "<script>" not in text
    header, rule = text.splitlines()[2:4]
    assert header.count("|") - header.count("\\|") == rule.count("|")  # no extra column
    for bad in ("two\nlines", "tab\there", ".."):
        assert_one_line_error(run_cli("report", "--runs", f"{bad}={tiny_run}", "--eval-data", "e", "-o", "o"),
                              "no control characters, '/'")
    assert_one_line_error(run_cli("report", "--runs", f"a/b={tiny_run}", "--eval-data", "e", "-o", "o"),
                          f"a/b={tiny_run}: no such run folder")  # a '/' before '=' makes it a folder name
    from audioscene.cli.arguments import named_run

    assert named_run("runs/a=b") == ("a=b", Path("runs/a=b"))  # a folder with '=' in its name


def test_report_checks_mapping_and_figure_clips_before_any_work(tiny_run, tiny_data, tmp_path):
    root = _dcase_root(tiny_data, tmp_path / "dataset")
    args = ["report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"), "--dcase", str(root), "-o",
            str(tmp_path / "r")]
    started = time.monotonic()
    assert_one_line_error(run_cli(*args, "--mapping", str(tmp_path / "none.json")), "none.json: no such mapping file")
    assert_one_line_error(run_cli(*args, "--figure-clips", "nope.wav"), "--figure-clips: nope.wav is not a file of")
    assert time.monotonic() - started < 60 and not (tmp_path / "r").exists()


def test_tables_3_and_4_show_several_runs_side_by_side_on_folders_with_strong_labels(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "report"
    result = run_cli("report", "--runs", f"weak={tiny_run}", f"again={tiny_run}", "--eval-data", str(tiny_data / "eval"),
                     "--bootstrap", "100", "--sed-splits", str(tiny_data / "eval"), str(tiny_data / "eval"),
                     "--sed-run", "weak", "--sed-run", "again", "--figure-clips", "synth_000001.flac", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    text = (out / "report.md").read_text()
    for name in ("weak", "again"):
        assert f"| {name}: median filter + swept thresholds — eval split" in text
        assert (out / "sed" / name / "tuned_median_thresholds.json").is_file()
        assert (out / "sed" / name / "psds_eval" / "metadata.tsv").is_file()
    summary = [line for line in text.splitlines()
               if line.startswith(("| weak ", "| again ")) and ("| tune " in line or "| eval " in line)]
    assert len(summary) == 4  # each run on the tune and the eval split
    # the same weights give the same row; Table 4 has one column per run
    weak, again = (next(line.split("|")[3:] for line in summary if line.startswith(f"| {n} ") and "| eval " in line)
                   for n in ("weak", "again"))
    assert weak == again
    header = next(line for line in text.splitlines() if line.startswith("| class "))  # Table 4's
    assert [cell.strip() for cell in header.split("|")[2:5]] == ["F1 % (1)", "F1 % (2)", "P %"]  # short headers
    assert ("(1) weak median filter + swept thresholds; (2) again median filter + swept thresholds; "
            "P %, R %, N ref, N sys: of (1)") in text
    assert (out / "sed" / "weak" / "figure2_1.png").is_file() and not (out / "sed" / "again" / "figure2_1.png").exists()
    assert_one_line_error(run_cli("report", "--runs", f"weak={tiny_run}", "--eval-data", str(tiny_data / "eval"),
                                  "--sed-splits", str(tiny_data / "train"), str(tiny_data / "eval"), "--sed-run", "x",
                                  "-o", str(tmp_path / "r")), "--sed-run 'x' is none of the --runs names (weak)")
    assert_one_line_error(run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"),
                                  "--sed-splits", str(tmp_path), str(tiny_data / "eval"), "-o", str(tmp_path / "r")),
                          f"--sed-splits: {tmp_path} has no audio")


def test_evaluate_adds_tables_3_and_4_tuned_on_the_given_split(tiny_run, tiny_data, tmp_path):
    from audioscene.events import read_events_tsv

    result = run_cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_data / "eval"), "--sed-tune",
                     str(tiny_data / "eval"), "--per-class", str(tmp_path / "pc.csv"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = tiny_run / "sed_eval"
    assert "## Detection summary" in result.stdout and "Figure 2" not in result.stdout
    row = next(line for line in result.stdout.splitlines()
               if line.startswith("| median filter + swept thresholds — eval split"))
    scores = event_f1(read_events_tsv(tiny_data / "eval" / "strong.tsv"),
                      read_events_tsv(out / "events_eval_median.tsv"), t_collar=0.2,
                      labels=list(json.loads((out / "tuned_median_thresholds.json").read_text())["classes"]))
    assert f"{100 * scores.macro_f1:.2f}" in row
    assert_one_line_error(run_cli("evaluate", "--run", str(tiny_run), "--data", str(tiny_data / "eval"),
                                  "--sed-tune", str(tmp_path)), f"--sed-tune: {tmp_path} has no strong.tsv")
