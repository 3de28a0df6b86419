import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from audioscene.errors import InputError
from audioscene.metrics import average_precision, d_prime, roc_auc, summarize


def per_class_sklearn(metric, y_true, y_score):
    return np.array([metric(y_true[:, c], y_score[:, c]) for c in range(y_true.shape[1])])


def random_case(seed: int, decimals: int | None = None, n: int = 400, k: int = 30):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n, k)) < rng.uniform(0.02, 0.4, k)).astype(int)
    y_true[0], y_true[1] = 1, 0  # every class has a positive and a negative
    y_score = rng.random((n, k)) + 0.3 * y_true
    return y_true, (np.round(y_score, decimals) if decimals is not None else y_score)


@pytest.mark.parametrize("seed, decimals", [(0, None), (1, None), (2, 1), (3, 1), (4, 0)])
def test_equal_to_sklearn(seed, decimals):
    y_true, y_score = random_case(seed, decimals)
    np.testing.assert_allclose(average_precision(y_true, y_score),
                               per_class_sklearn(average_precision_score, y_true, y_score), atol=1e-12, rtol=0)
    np.testing.assert_allclose(roc_auc(y_true, y_score),
                               per_class_sklearn(roc_auc_score, y_true, y_score), atol=1e-12, rtol=0)


def test_single_positive_classes():
    rng = np.random.default_rng(5)
    y_true = np.zeros((200, 12), dtype=int)
    y_true[rng.integers(0, 200, 12), np.arange(12)] = 1
    y_score = np.round(rng.random((200, 12)), 2)
    np.testing.assert_allclose(average_precision(y_true, y_score),
                               per_class_sklearn(average_precision_score, y_true, y_score), atol=1e-12, rtol=0)
    np.testing.assert_allclose(roc_auc(y_true, y_score),
                               per_class_sklearn(roc_auc_score, y_true, y_score), atol=1e-12, rtol=0)


def test_every_kind_of_tie_and_score_type():
    """All scores equal, positives tied with negatives at both ends, -0.0 vs 0.0, integer scores."""
    y_true = np.array([[1, 1, 0, 1], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 0]])
    y_score = np.array([[0.5, 0.0, 3, 1], [0.5, -0.0, 3, 1], [0.5, 1.0, 2, 0], [0.5, 0.0, 2, 0], [0.5, 1.0, 1, 0]])
    for scores in (y_score, y_score.astype(np.float32), (y_score * 2).astype(int)):
        np.testing.assert_allclose(average_precision(y_true, scores),
                                   per_class_sklearn(average_precision_score, y_true, scores), atol=1e-12, rtol=0)
        np.testing.assert_allclose(roc_auc(y_true, scores),
                                   per_class_sklearn(roc_auc_score, y_true, scores), atol=1e-12, rtol=0)
    assert roc_auc(y_true, y_score)[0] == 0.5


def test_d_prime_matches_the_paper():
    assert d_prime(0.971) == pytest.approx(2.681, abs=1e-3)
    assert d_prime(0.959) == pytest.approx(2.460, abs=1e-3)
    # The paper's 2.582 for "0.966" comes from an AUC that was rounded to 3 decimals; sqrt(2)·Φ⁻¹
    # gives 2.5809 at exactly 0.966, and 2.582 lies inside the rounding interval's image.
    assert d_prime(0.966) == pytest.approx(2.581, abs=1e-3)
    assert d_prime(0.9655) < 2.582 < d_prime(0.9665)
    assert d_prime(0.5) == 0.0


def test_summarize_skips_and_counts_classes_without_positives_or_negatives():
    y_true, y_score = random_case(6)
    y_true[:, 3] = 0
    y_true[:, 7] = 1
    result = summarize(y_true, y_score)
    assert (result.n_classes_scored, result.n_classes_skipped, result.classes) == (28, 2, "28/30")
    keep = [c for c in range(30) if c not in (3, 7)]
    assert result["mAP"] == pytest.approx(per_class_sklearn(average_precision_score, y_true[:, keep], y_score[:, keep]).mean(), abs=1e-12)
    assert result["mAUC"] == pytest.approx(per_class_sklearn(roc_auc_score, y_true[:, keep], y_score[:, keep]).mean(), abs=1e-12)
    assert result["d_prime"] == pytest.approx(d_prime(result["mAUC"]))
    assert np.isnan(result.per_class["ap"][[3, 7]]).all() and np.isnan(result.per_class["auc"][[3, 7]]).all()


def test_perfect_and_reversed_scores():
    y_true = np.array([[1], [1], [0], [0]])
    assert summarize(y_true, np.array([[0.9], [0.8], [0.2], [0.1]]))["mAP"] == 1.0
    assert roc_auc(y_true, np.array([[0.1], [0.2], [0.8], [0.9]]))[0] == 0.0


@pytest.mark.parametrize("y_true, y_score, message", [
    (np.ones((4, 3)), np.ones((4, 2)), "n_clips, n_classes"),
    (np.array([[1], [0]]), np.array([[np.nan], [0.1]]), "NaN"),
    (np.array([[2], [0]]), np.array([[0.3], [0.1]]), "only 0 and 1"),
    (np.zeros((3, 2)), np.zeros((3, 2)), "nothing to score"),
])
def test_bad_input(y_true, y_score, message):
    with pytest.raises(ValueError, match=message):
        summarize(y_true, y_score)


def test_bootstrap_resamples_score_as_summarize_does_on_the_drawn_clips():
    from audioscene.metrics import SCORES
    from audioscene.metrics.bootstrap import bootstrap_scores, confidence_intervals, weighted_per_class

    rng = np.random.default_rng(5)
    y_true = rng.random((120, 6)) < 0.15
    y_true[:, 5] = False
    y_true[:3, 5] = True  # a rare class: some resamples draw none of its positives
    y_score = np.round(rng.random((120, 6)) + 0.4 * y_true, 1)  # many ties
    indices = rng.integers(0, 120, (20, 120))
    counts = np.stack([np.bincount(i, minlength=120) for i in indices])
    per_class = weighted_per_class(y_true, y_score, counts)
    for row, drawn in enumerate(indices):
        reference = summarize(y_true[drawn], y_score[drawn])
        for key in ("ap", "auc"):
            np.testing.assert_allclose(per_class[key][row], reference.per_class[key], atol=1e-12)
        for name, score in SCORES.items():
            assert score.of_classes({k: v[row] for k, v in per_class.items()}) == pytest.approx(reference[name], abs=1e-12)
    point = summarize(y_true, y_score)
    intervals = confidence_intervals(y_true, y_score, n_resamples=300, seed=1)
    for key in ("mAP", "mAUC", "d_prime"):
        low, high = intervals[key]
        assert low < point[key] < high
    again = bootstrap_scores(y_true, y_score, n_resamples=300, seed=1, chunk=7)
    np.testing.assert_allclose(again["mAP"], bootstrap_scores(y_true, y_score, 300, seed=1)["mAP"])  # chunking


@pytest.mark.parametrize("case", ["three classes, 12 files of 10 s", "a class without references",
                                  "the smallest such case", *(f"random with a class without references, {i}"
                                                              for i in range(3))])
def test_psds_equals_the_reference_psds_eval(case):
    """Numbers written by psds_eval 0.5.3 (tests/data/make_psds_reference.py: it does not run under
    numpy 2 / pandas 3, so they were produced in its own environment): PSDS1, PSDS2 and a plain
    setting, and the TPR of every operating point; cases with a label that has no reference events,
    files of different durations, very short events and operating points without detections."""
    import json
    from pathlib import Path

    from audioscene.events import Event
    from audioscene.metrics.psds import PSDS1, PSDS2, operating_point, psds

    data = json.loads((Path(__file__).parent / "data" / "psds_reference.json").read_text())[case]
    reference = [Event(*e) for e in data["reference"]]
    points = [[Event(*e) for e in detections] for detections in data["points"]]
    assert {k: data["scores"][k][k2] for k in ("psds1", "psds2") for k2 in PSDS1} == \
        {k: v[k2] for k, v in (("psds1", PSDS1), ("psds2", PSDS2)) for k2 in PSDS1}
    for setting in data["scores"].values():
        criteria = {key: setting[key] for key in ("dtc", "gtc", "cttc")}
        ours = psds(reference, points, data["files"], data["labels"], **criteria, alpha_ct=setting["alpha_ct"],
                    alpha_st=setting["alpha_st"], max_efpr=setting["max_efpr"])
        assert ours == pytest.approx(setting["psds"], abs=1e-12)
        columns = [data["labels"].index(c) for c in setting["classes"] if c in data["labels"]]  # the reference classes
        tpr = [operating_point(reference, p, data["files"], data["labels"], **criteria)["tpr"][columns]
               for p in points]
        # psds_eval keeps one of identical operating points (the empty ones at the end): compare as many
        np.testing.assert_allclose(tpr[:len(setting["tpr"])], setting["tpr"], atol=1e-12)


def test_psds_corner_cases():
    import json
    from pathlib import Path

    from audioscene.events import Event
    from audioscene.metrics.psds import PSDS1, psds

    data = json.loads((Path(__file__).parent / "data" / "psds_reference.json").read_text())[
        "three classes, 12 files of 10 s"]
    reference = [Event(*e) for e in data["reference"]]
    perfect = psds(reference, [reference], data["files"], data["labels"], **PSDS1)
    assert perfect == pytest.approx(1.0)  # every reference found, no false alarm: the whole area
    zero_length = [Event(e.filename, e.onset, e.onset, e.label) for e in reference[:3]]
    assert psds(reference, [reference + zero_length], data["files"], data["labels"], **PSDS1) == pytest.approx(1.0)
    assert psds(reference + zero_length, [reference], data["files"], data["labels"], **PSDS1) == pytest.approx(1.0)
    with pytest.raises(InputError, match="outside the evaluation"):
        psds(reference, [[Event("other.wav", 0.0, 1.0, "Cat")]], data["files"], data["labels"], **PSDS1)


def test_bootstrap_intervals_shrink_with_more_clips():
    from audioscene.metrics.bootstrap import confidence_intervals

    rng = np.random.default_rng(9)
    widths = []
    for n_clips in (100, 1600):
        y_true = rng.random((n_clips, 4)) < 0.2
        y_score = rng.random((n_clips, 4)) + 0.5 * y_true
        low, high = confidence_intervals(y_true, y_score, n_resamples=200, seed=0)["mAP"]
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/√16 of the width in theory
