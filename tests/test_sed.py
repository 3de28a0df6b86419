"""Sound event detection: post-processing against loops, event_f1 against sed_eval 0.2.1, tuning, TSV IO."""

import json
import warnings

import numpy as np
import pytest

from audioscene.events import Event, EventFileError, read_events_tsv, write_events_tsv
from audioscene.labels import map_classes
from audioscene.metrics import event_f1
from audioscene.sed import (
    TuneGrid,
    Tuning,
    binarize,
    events_from_frames,
    median_filter,
    to_events,
    tune,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sed_eval's dependencies warn about pkg_resources on import
    import sed_eval


def sed_eval_results(reference, estimated, labels, t_collar=0.2, percentage_of_length=0.2, zero_score=True):
    """sed_eval's EventBasedMetrics fed file by file, over the files named in either list."""
    metric = sed_eval.sound_event.EventBasedMetrics(
        list(labels), t_collar=t_collar, percentage_of_length=percentage_of_length,
        empty_system_output_handling="zero_score" if zero_score else None)
    as_dicts = lambda events, name: [  # noqa: E731
        {"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label}
        for e in events if e.filename == name]
    for name in dict.fromkeys(e.filename for e in list(reference) + list(estimated)):
        metric.evaluate(as_dicts(reference, name), as_dicts(estimated, name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN class scores
        return metric.results()


# The same integer counts through formulas that may group their operations (and the macro mean its
# sum) differently: equal to a few units in the last place, NaN where both are undefined.
SAME_AS_SED_EVAL = dict(rtol=1e-12, atol=0, equal_nan=True)


def assert_same_as_sed_eval(reference, estimated, labels=None, **kwargs):
    ours = event_f1(reference, estimated, labels=labels, **kwargs)
    theirs = sed_eval_results(reference, estimated, ours.labels, **kwargs)
    for k, label in enumerate(ours.labels):
        expected = theirs["class_wise"][label]["f_measure"]
        got = {"f_measure": ours.f1[k], "precision": ours.precision[k], "recall": ours.recall[k]}
        np.testing.assert_allclose([got[m] for m in expected], list(expected.values()), err_msg=label,
                                   **SAME_AS_SED_EVAL)
        counts = theirs["class_wise"][label]["count"]
        assert (ours.n_ref[k], ours.n_sys[k]) == (counts["Nref"], counts["Nsys"])
    overall = theirs["overall"]["f_measure"]
    np.testing.assert_allclose([ours.micro_f1, ours.micro_precision, ours.micro_recall],
                               [overall["f_measure"], overall["precision"], overall["recall"]], **SAME_AS_SED_EVAL)
    average = theirs["class_wise_average"]["f_measure"]
    np.testing.assert_allclose([ours.macro_f1, ours.macro_precision, ours.macro_recall],
                               [average["f_measure"], average["precision"], average["recall"]], **SAME_AS_SED_EVAL)
    return ours


def E(filename, onset, offset, label):
    return Event(filename, onset, offset, label)


EDGE_CASES = {
    "exactly on the collars": (
        [E("a", 1.0, 3.0, "Dog"), E("a", 5.0, 5.5, "Dog"), E("b", 0.5, 4.5, "Cat")],
        [E("a", 1.2, 3.4, "Dog"), E("a", 4.8, 5.7, "Dog"), E("b", 0.3, 5.3, "Cat")]),
    "just outside the collars": (
        [E("a", 1.0, 3.0, "Dog"), E("b", 0.5, 4.5, "Cat")],
        [E("a", 1.2001, 3.0, "Dog"), E("b", 0.5, 5.3001, "Cat")]),
    "zero-length events": (
        [E("a", 2.0, 2.0, "Dog"), E("a", 4.0, 4.0, "Dog"), E("a", 6.0, 6.5, "Cat")],
        [E("a", 2.1, 2.1, "Dog"), E("a", 4.0, 4.3, "Dog"), E("a", 6.1, 6.1, "Cat")]),
    "overlapping same-class events": (
        [E("a", 0.0, 5.0, "Speech"), E("a", 1.0, 2.0, "Speech"), E("a", 1.1, 2.1, "Speech")],
        [E("a", 0.1, 5.1, "Speech"), E("a", 1.05, 2.05, "Speech"), E("a", 0.9, 1.9, "Speech"),
         E("a", 1.0, 2.0, "Speech")]),
    # X fits both references, Y only the first: first-come matching takes X for A and leaves B
    # unmatched, a maximum matching pairs Y-A and X-B.
    "many-to-one candidates": (
        [E("a", 0.0, 1.0, "Dog"), E("a", 0.15, 1.1, "Dog"), E("a", 3.0, 4.0, "Dog")],
        [E("a", 0.1, 1.05, "Dog"), E("a", 0.0, 0.95, "Dog"), E("a", 3.0, 4.0, "Dog"), E("a", 3.1, 4.1, "Dog"),
         E("a", 2.9, 3.9, "Dog")]),
    "empty reference": ([], [E("a", 0.0, 1.0, "Dog"), E("b", 2.0, 3.0, "Cat")]),
    "empty estimate": ([E("a", 0.0, 1.0, "Dog"), E("b", 2.0, 3.0, "Cat")], []),
    "class only in the reference / only in the estimate": (
        [E("a", 0.0, 1.0, "Dog"), E("a", 2.0, 3.0, "Cat")],
        [E("a", 0.0, 1.0, "Dog"), E("a", 2.0, 3.0, "Blender")]),
    "file only in the estimate": (
        [E("a", 0.0, 1.0, "Dog")],
        [E("a", 0.0, 1.0, "Dog"), E("z", 0.0, 1.0, "Dog")]),
    "same times, other label": (
        [E("a", 0.0, 1.0, "Dog")],
        [E("a", 0.0, 1.0, "Cat")]),
}


@pytest.mark.parametrize("case", EDGE_CASES)
@pytest.mark.parametrize("zero_score", [True, False])
def test_event_f1_equals_sed_eval_on_edge_cases(case, zero_score):
    reference, estimated = EDGE_CASES[case]
    assert_same_as_sed_eval(reference, estimated, zero_score=zero_score)
    assert_same_as_sed_eval(reference, estimated, t_collar=0.4, zero_score=zero_score)


def test_event_f1_edge_case_values():
    ours = event_f1(*EDGE_CASES["many-to-one candidates"])
    assert ours.n_tp.tolist() == [3]  # the maximum matching, not first-come
    # "Exactly on the collar" is decided in float64, as in sed_eval: 1.2 - 1.0 = 0.19999999999999996
    # and 5.3 - 4.5 = 0.7999999999999998 are inside, 5.0 - 4.8 = 0.20000000000000018 is outside.
    assert event_f1(*EDGE_CASES["exactly on the collars"]).n_tp.tolist() == [1, 1]
    assert event_f1(*EDGE_CASES["just outside the collars"]).micro_f1 == 0.0
    empty = event_f1(*EDGE_CASES["empty estimate"])
    assert empty.f1.tolist() == [0.0, 0.0] and empty.macro_f1 == 0.0
    assert np.isnan(event_f1(*EDGE_CASES["empty estimate"], zero_score=False).macro_f1)


def random_events(rng, n_files, labels, max_per_class=3, step=0.02):
    """Reference events on a coarse time grid (so collar boundaries are hit exactly) and estimates
    made from them by jitter, drops, splits, label swaps and false alarms."""
    reference, estimated = [], []
    for f in range(n_files):
        name = f"file_{f:03d}.wav"
        for label in rng.choice(labels, size=rng.integers(1, len(labels) + 1), replace=False):
            for _ in range(rng.integers(0, max_per_class + 1)):
                onset = rng.integers(0, 400) * step
                offset = onset + rng.integers(0, 200) * step
                reference.append(E(name, onset, offset, str(label)))
                action = rng.random()
                jitter = lambda: rng.integers(-15, 16) * step  # noqa: E731
                if action < 0.55:
                    estimated.append(E(name, max(0.0, onset + jitter()), max(0.0, offset + jitter()), str(label)))
                elif action < 0.65:
                    middle = (onset + offset) / 2
                    estimated += [E(name, onset, middle, str(label)), E(name, middle, offset, str(label))]
                elif action < 0.75:
                    estimated.append(E(name, onset, offset, str(rng.choice(labels))))
        for _ in range(rng.integers(0, 3)):
            onset = rng.integers(0, 400) * step
            estimated.append(E(name, onset, onset + rng.integers(1, 100) * step, str(rng.choice(labels))))
    return reference, [e for e in estimated if e.offset >= e.onset]


@pytest.mark.parametrize("t_collar", [0.2, 0.4])
def test_event_f1_equals_sed_eval_on_200_random_files(t_collar):
    labels = [f"class_{k}" for k in range(8)]
    reference, estimated = random_events(np.random.default_rng(int(t_collar * 10)), 200, labels)
    assert len(reference) > 500 and len(estimated) > 400
    ours = assert_same_as_sed_eval(reference, estimated, labels=labels, t_collar=t_collar)
    assert 0.1 < ours.micro_f1 < 0.95  # a mix of hits and misses, not a trivial case
    assert_same_as_sed_eval(reference, estimated, labels=labels, t_collar=t_collar, zero_score=False)


def test_event_f1_rejects_bad_input():
    with pytest.raises(ValueError, match="'Cow'.*not one of"):
        event_f1([E("a", 0, 1, "Dog")], [E("a", 0, 1, "Cow")], labels=["Dog"])
    with pytest.raises(ValueError, match="t_collar"):
        event_f1([], [], t_collar=0.0)


def loop_median(column, size):
    padded = np.pad(column, size // 2, mode="edge")
    return np.array([np.median(padded[t:t + size]) for t in range(len(column))])


def test_median_filter_equals_a_loop():
    frames = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    kernels = [1, 3, 5, 9]
    out = median_filter(frames, kernels)
    for k, size in enumerate(kernels):
        np.testing.assert_allclose(out[:, k], loop_median(frames[:, k], size), rtol=0, atol=0)
    batch = np.stack([frames, frames[::-1]])
    # a median of an odd window selects one of its values: no arithmetic, so exact
    np.testing.assert_array_equal(median_filter(batch, kernels)[1], median_filter(frames[::-1], kernels))
    np.testing.assert_array_equal(median_filter(frames, 1), frames)
    with pytest.raises(ValueError, match="odd"):
        median_filter(frames, 4)
    with pytest.raises(ValueError, match="one per class"):
        median_filter(frames, [3, 3])


def test_binarize_equals_a_loop():
    frames = np.random.default_rng(1).random((30, 3))
    thresholds = [0.2, 0.5, 0.9]
    expected = [[frames[t, k] > thresholds[k] for k in range(3)] for t in range(30)]
    np.testing.assert_array_equal(binarize(frames, thresholds), expected)
    np.testing.assert_array_equal(binarize(frames, 0.5), frames > 0.5)


def to_frames(events, hop: float, n_frames: int, labels) -> np.ndarray:
    """Active frames `[n_frames, C]`: frame i active for a class when [i·hop, (i+1)·hop) overlaps
    one of its events (what `to_events` inverts at the same hop)."""
    active = np.zeros((n_frames, len(labels)), dtype=bool)
    for event in events:
        first, last = int(np.floor(event.onset / hop + 1e-9)), int(np.ceil(event.offset / hop - 1e-9))
        active[first:max(last, first + 1), labels.index(event.label)] = True
    return active


def test_to_events_rule_and_round_trip():
    labels = ["Cat", "Dog", "Speech"]
    active = np.random.default_rng(2).random((64, 3)) > 0.6
    events = to_events(active, 0.32, labels, "x.wav")
    # each event is one maximal run: onset = first × hop, offset = (last + 1) × hop
    for event in events:
        k = labels.index(event.label)
        first, end = round(event.onset / 0.32), round(event.offset / 0.32)
        assert active[first:end, k].all()
        assert (first == 0 or not active[first - 1, k]) and (end == 64 or not active[end, k])
    np.testing.assert_array_equal(to_frames(events, 0.32, 64, labels), active)
    assert to_events(to_frames(events, 0.32, 64, labels), 0.32, labels, "x.wav") == events
    assert sum(e.offset - e.onset for e in events) == pytest.approx(active.sum() * 0.32)


def test_events_on_the_frame_grid_survive_frames_and_back():
    labels = ["Dog", "Cat"]
    events = [E("f", 0.0, 0.64, "Dog"), E("f", 1.28, 3.2, "Dog"), E("f", 0.32, 0.96, "Cat")]
    frames = to_frames(events, 0.32, 12, labels)
    assert sorted(to_events(frames, 0.32, labels, "f")) == sorted(events)


def test_to_events_clips_to_the_duration():
    events = to_events(np.ones((32, 1), bool), 0.32, ["Dog"], "f", duration=10.0)
    assert events == [E("f", 0.0, 10.0, "Dog")]


def test_map_classes_takes_the_max_over_each_group():
    frames = np.array([[0.1, 0.7, 0.3], [0.9, 0.2, 0.4]])
    mapped, names = map_classes(frames, {"A": (0, 2), "B": (1,)})
    assert names == ("A", "B")
    np.testing.assert_array_equal(mapped, [[0.3, 0.7], [0.9, 0.2]])  # a max selects: exact


def noisy_framewise(rng, reference, files, labels, hop=0.32, n_frames=32):
    """Blurred, noisy, biased frame scores for the given reference events (some classes too eager,
    some too shy, so a threshold of 0.5 is wrong for them)."""
    bias = np.linspace(-0.3, 0.3, len(labels))
    out = {}
    for name in files:
        truth = to_frames([e for e in reference if e.filename == name], hop, n_frames, labels).astype(float)
        noisy = np.clip(0.5 + 0.35 * (truth - 0.5) + bias + rng.normal(0, 0.15, truth.shape), 0, 1)
        out[name] = noisy.astype(np.float32)
    return out


def synthetic_detection_task(seed=3, n_files=60):
    rng = np.random.default_rng(seed)
    labels = ["Alarm", "Cat", "Dog", "Frying"]
    reference = []
    for f in range(n_files):
        for label in labels:
            if rng.random() < 0.5:
                onset = rng.integers(0, 20) * 0.32
                reference.append(E(f"c{f}", onset, min(10.0, onset + rng.integers(2, 12) * 0.32), label))
    files = [f"c{f}" for f in range(n_files)]
    return noisy_framewise(rng, reference, files, labels), reference, labels


def test_tuning_never_lowers_a_class_f1_and_reports_what_it_found():
    framewise, reference, labels = synthetic_detection_task()
    durations = dict.fromkeys(framewise, 10.0)
    untuned = event_f1(reference, events_from_frames(framewise, 0.32, labels, durations=durations), labels=labels)
    tuning = tune(framewise, reference, 0.32, labels, durations=durations)
    tuned = event_f1(reference, events_from_frames(framewise, 0.32, labels, *tuning.for_labels(labels), durations),
                     labels=labels)
    np.testing.assert_allclose(tuning.f1, tuned.f1)  # the F1 it reports is the one event_f1 measures
    np.testing.assert_allclose(tuning.f1_untuned, untuned.f1)
    assert (tuned.f1 >= untuned.f1).all()
    assert tuned.macro_f1 > untuned.macro_f1 + 0.1  # the biased classes gain from their own thresholds
    assert tuning.thresholds[0] < 0.5 < tuning.thresholds[-1]  # shy class lower, eager class higher
    assert any(k > 1 for k in tuning.kernels)  # the median filter removes noise blips


def test_tuning_with_thresholds_only_and_save_load(tmp_path):
    framewise, reference, labels = synthetic_detection_task(seed=4, n_files=20)
    tuning = tune(framewise, reference, 0.32, labels, TuneGrid(kernels=[1], thresholds=[0.3, 0.7]))
    assert set(tuning.kernels) == {1} and set(tuning.thresholds) <= {0.3, 0.5, 0.7}
    tuning.save(tmp_path / "tuned.json")
    assert Tuning.load(tmp_path / "tuned.json") == tuning
    (tmp_path / "bad.json").write_text('{"classes": {"Dog": {"threshold": "x"}}}')
    with pytest.raises(ValueError, match="bad.json: not a tuning file"):
        Tuning.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no values for"):
        tuning.for_labels(["Speech"])


def test_tsv_round_trip(tmp_path):
    events = [E("a.wav", 0.0, 1.25, "Dog"), E("b.wav", 3.5, 3.5, "Cat")]
    write_events_tsv(tmp_path / "e.tsv", events)
    assert read_events_tsv(tmp_path / "e.tsv") == events


@pytest.mark.parametrize("line, problem", [
    ("a.wav\t0.5\tDog", "expected 4 tab-separated columns"),
    ("a.wav\tzero\t1.0\tDog", "must be numbers"),
    ("a.wav\t-1\t1.0\tDog", "negative time"),
    ("a.wav\t2.0\t1.0\tDog", "onset 2.0 is after offset 1.0"),
    ("a.wav\tnan\t1.0\tDog", "must be finite"),
])
def test_tsv_errors_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\na.wav\t0\t1\tDog\nb.wav\n" + line + "\n")
    with pytest.raises(EventFileError, match=f"bad.tsv:4: .*{problem}"):
        read_events_tsv(path)


def test_tsv_without_header_or_file(tmp_path):
    (tmp_path / "h.tsv").write_text("a.wav\t0\t1\tDog\n")
    with pytest.raises(EventFileError, match="h.tsv:1: expected the header"):
        read_events_tsv(tmp_path / "h.tsv")
    with pytest.raises(EventFileError, match="no such file"):
        read_events_tsv(tmp_path / "missing.tsv")


def test_upsampled_frames_place_boundaries_on_a_finer_grid(tmp_path):
    from audioscene.sed import Tuning, events_from_frames, upsample

    scores = np.array([[0.0], [0.0], [1.0], [1.0], [0.0]])
    assert upsample(scores, 1) is scores
    fine = upsample(scores, 3)
    assert fine.shape == (15, 1)
    np.testing.assert_allclose(fine[1::3], scores)  # the old frames' centres keep their values
    np.testing.assert_allclose(fine[[5, 6]], [[1 / 3], [2 / 3]])  # linear between centres
    coarse = events_from_frames({"a": scores}, 0.32, ["x"], 0.3)
    finer = events_from_frames({"a": scores}, 0.32, ["x"], 0.3, factor=4)
    assert (coarse[0].onset, coarse[0].offset) == pytest.approx((0.64, 1.28))
    # the 0.3 crossings lie 0.096 s before / after the centres of frames 2 and 3: 0.576 s and 1.344 s
    assert (finer[0].onset, finer[0].offset) == pytest.approx((0.56, 1.36))
    tuning = Tuning(("x",), (0.3,), (3,), (0.5,), (0.4,), upsample=4)
    tuning.save(tmp_path / "t.json")
    assert Tuning.load(tmp_path / "t.json") == tuning
    record = json.loads((tmp_path / "t.json").read_text())
    del record["upsample"]  # a file from before the option
    (tmp_path / "old.json").write_text(json.dumps(record))
    assert Tuning.load(tmp_path / "old.json").upsample == 1


@pytest.mark.parametrize("resolution", [1.0, 0.5])
def test_segment_f1_equals_sed_eval(resolution):
    from audioscene.metrics.events import segment_f1

    rng = np.random.default_rng(11)
    labels = ("a", "b", "c")

    def events(n):
        out = []
        for _ in range(n):
            onset = round(float(rng.uniform(0, 9)), 3)
            out.append(E(f"f{rng.integers(5)}.wav", onset, round(onset + float(rng.uniform(0.05, 3)), 3),
                         str(rng.choice(labels))))
        return out

    reference, estimated = events(30), events(25) + [E("f9.wav", 1.0, 2.0, "a")]  # a file without references
    ours = segment_f1(reference, estimated, resolution, labels)
    metric = sed_eval.sound_event.SegmentBasedMetrics(list(labels), time_resolution=resolution)
    for name in dict.fromkeys(e.filename for e in reference + estimated):
        metric.evaluate(*([{"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label}
                           for e in side if e.filename == name] for side in (reference, estimated)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = metric.results()
    assert ours.micro_f1 == pytest.approx(theirs["overall"]["f_measure"]["f_measure"], abs=1e-12)
    assert ours.macro_f1 == pytest.approx(theirs["class_wise_average"]["f_measure"]["f_measure"], abs=1e-12)
    for k, label in enumerate(labels):
        assert (ours.n_ref[k], ours.n_sys[k]) == (theirs["class_wise"][label]["count"]["Nref"],
                                                  theirs["class_wise"][label]["count"]["Nsys"])
