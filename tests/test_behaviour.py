"""Behaviour kept through a refactor: a short run, its tags and events and its Table-2 scores
equal what the package gave before issue 31's changes (`tests/data/behaviour_reference.json`,
made at commit 451221e by `tests/data/make_behaviour_reference.py`, one thread). On the machine
that made it the numbers are bit-identical. Training is not bit-identical across CPUs or thread
counts: Adam turns rounding differences in near-zero gradients into whole steps, and six steps
moved the outputs by 3e-3 between one and two threads here; the comparison allows that much (a
change of recipe, loss or front end moves them further), on one thread as recorded."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def test_a_short_run_tags_detects_and_scores_as_before(tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the reference was recorded
    try:
        now, before = _record(tmp_path)
    finally:
        torch.set_num_threads(threads)
    for name, values in before["clipwise"].items():
        np.testing.assert_allclose(now["clipwise"][name], values, atol=1e-2, err_msg=name)
        assert now["framewise_sum"][name] == pytest.approx(before["framewise_sum"][name], rel=1e-2)
    if now["active_frames"] == before["active_frames"]:  # events at 0.5: scores near it may cross it
        assert now["events"] == before["events"]
    assert abs(now["active_frames"] - before["active_frames"]) <= 0.05 * before["active_frames"]
    # Table 2 over 16 clips: a rank swap moves an AP by up to 1 / its positives
    assert now["peak_epoch"] == before["peak_epoch"]
    for variant in ("peak", "avg"):
        for score, value in before[variant].items():
            assert now[variant][score] == pytest.approx(value, abs=0.05), (variant, score)


def _record(tmp_path):
    spec = importlib.util.spec_from_file_location("make_behaviour_reference", DATA / "make_behaviour_reference.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    before = json.loads((DATA / "behaviour_reference.json").read_text())
    return maker.record(tmp_path), before
