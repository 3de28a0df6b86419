"""Helpers shared by the test modules (fixtures live in conftest.py)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from audioscene.train import TrainConfig

# screenshots of the browser tests
ARTIFACTS = Path(os.environ.get("AUDIOSCENE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`audioscene ARGS` run in this process (`cli.main`, what `python -m audioscene` runs), its
    stdout, stderr (log records included) and exit code captured as a subprocess's would be: a new
    interpreter per call would cost each test about 2 s of imports. Tests that need a process of its
    own (a kill, a server, torchrun) start one themselves."""
    import contextlib
    import io
    import logging

    from audioscene import cli

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]  # main's basicConfig then leaves this handler (and the level) as set here
    root.setLevel(logging.DEBUG if "-v" in args or "--verbose" in args else logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse: --help, or a bad command line (2)
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    return subprocess.CompletedProcess(["audioscene", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def sine(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(train_data=str(data / "train"), eval_data=str(data / "eval"), out_dir=str(out),
                  model="resnet_b_att", model_args={"width": 8}, epochs=2, batch_size=16, lr=1e-3, seed=7)
    return TrainConfig(**{**values, **overrides})


def browser_path() -> str:
    """The system's Chromium for Playwright; skips the test without one (fails under CI's
    AUDIOSCENE_REQUIRE_SYSTEM_TOOLS)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("AUDIOSCENE_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("Chromium is required (AUDIOSCENE_REQUIRE_SYSTEM_TOOLS is set) but not installed")
        pytest.skip("no Chromium on this machine: apt-get install chromium (.ci/run does) to run the browser test")
    return path


def audioset_folder(split, names, out):
    """`folder:` data of the clips `names` of a synthetic split, labelled with AudioSet names (each
    DCASE class as its first AudioSet label), as a 527-label model is scored."""
    import csv

    from audioscene.data.folder import ClipDataset
    from audioscene.labels import DCASE2018_AUDIOSET_NAMES

    (out / "audio").mkdir(parents=True)
    labels = {clip.source.name: clip.labels for clip in ClipDataset.from_folder(split).clips}
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "labels"])
        for name in names:
            shutil.copy(split / "audio" / name, out / "audio" / name)
            writer.writerow([name, ";".join(DCASE2018_AUDIOSET_NAMES[label][0] for label in labels[name])])
    return f"folder:{out / 'audio'}", str(out / "labels.csv")


class LoudnessDetector(torch.nn.Module):
    """A stand-in model for live detection with known answers: one class, "burst", whose score in
    each 0.32 s frame is a steep sigmoid of that frame's mean log-mel above `level`; a frame's score
    depends on its own audio only, so every window that covers it gives the same. `burn`: a model
    also run on the same input and ignored, to cost a real model's compute."""

    takes_audio = True
    frame_hop = 0.32
    min_frames = 32

    def __init__(self, level: float = -1.0, burn: torch.nn.Module | None = None):
        super().__init__()
        self.level, self.burn = level, burn
        self.config = type("Config", (), {"name": "loudness"})()

    def forward(self, logmel):
        if self.burn is not None:
            self.burn(logmel)
        frames = logmel.shape[1] // 32
        loudness = logmel[:, :frames * 32].reshape(logmel.shape[0], frames, 32 * logmel.shape[2]).mean(dim=2)
        framewise = torch.sigmoid(4.0 * (loudness - self.level))[:, :, None]
        return {"clipwise": framewise.amax(dim=1), "framewise": framewise, "frame_hop": self.frame_hop}


def noise_bursts(seconds: float, bursts: list[tuple[float, float]], seed: int = 0, rate: int = 16000) -> np.ndarray:
    """Quiet noise with a loud burst of noise during each (onset, offset) in seconds."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    loud = np.zeros(len(t), bool)
    for onset, offset in bursts:
        loud |= (t >= onset) & (t < offset)
    return (rng.standard_normal(len(t)) * np.where(loud, 0.3, 0.003)).astype(np.float32)


def reference_script(name: str):
    """A reference script of tests/data (e.g. "make_ced_reference") as a module: the tests share its
    seeded weights and clips; it imports nothing of the authors' code at the top."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "data" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def released_run_goes_through_every_command(run: str, tiny_data, tmp_path, row: str, published: str, head: str) -> dict:
    """A zoo run by name through tag (top 3), detect (DCASE classes), predict, export-onnx with its
    front end (ONNX Runtime parity), evaluate and report (its published row, `published` mAP, beside
    ours) and `train --init` onto the tiny data's labels (lr 1e-12: the weights kept but the new head
    `head`). Returns the clip, the tag output, the fine-tuned checkpoint and the release's weights."""
    import re

    from audioscene.checkpoints import Checkpoint, Run

    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    tagged = run_cli("tag", str(clip), "--run", run, "--top-k", "3")
    assert tagged.returncode == 0, tagged.stderr
    assert tagged.stdout.startswith(f"{clip.name}\t") and len(re.findall(r" [01]\.\d{3}", tagged.stdout)) == 3
    detected = run_cli("detect", str(clip), "--run", run, "--classes", "dcase2018", "-o", str(tmp_path / "e.tsv"))
    assert detected.returncode == 0, detected.stderr
    names = sorted(p.name for p in (tiny_data / "eval" / "audio").glob("*.flac"))[:8]
    data, labels = audioset_folder(tiny_data / "eval", names, tmp_path / "eval8")  # scored on AudioSet's labels
    assert run_cli("predict", "--run", run, "--data", data, "--labels", labels, "-o",
                   str(tmp_path / "t.npz")).returncode == 0
    with np.load(tmp_path / "t.npz") as teacher:
        assert teacher["probs"].shape == (8, 527)
    exported = run_cli("export-onnx", "--run", run, "-o", str(tmp_path / "m.onnx"), "--with-frontend")
    assert exported.returncode == 0, exported.stderr
    evaluated = run_cli("evaluate", "--run", run, "--data", data, "--labels", labels)
    assert evaluated.returncode == 0 and row in evaluated.stdout and published in evaluated.stdout, evaluated.stderr
    reported = run_cli("report", "--runs", f"zoo={run}", "--eval-data", data, "--labels", labels, "--bootstrap", "100",
                       "-o", str(tmp_path / "report"))
    assert reported.returncode == 0, reported.stderr[-2000:]
    table_row = next(line for line in reported.stdout.splitlines() if line.startswith("| zoo (peak"))
    assert row in table_row and published in table_row
    tuned = run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"), "--init", run,
                    "--epochs", "1", "--batch-size", "16", "--lr", "1e-12", "--out", str(tmp_path / "tuned"))
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    state = Checkpoint.load(tmp_path / "tuned" / "epoch_001.pt")
    assert state.model[head].shape[0] == len(state.labels) == 10  # a new head for its labels
    return dict(clip=clip, tagged=tagged.stdout, tuned=state, release=Checkpoint.load(Run.open(run).paths[0]).model)
