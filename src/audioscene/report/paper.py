"""The paper's published numbers, typed once: Table 2 (AudioSet eval set), Table 3 and Table 4
(DCASE 2018 task 4), and which of our models each Table-2 row describes. Table 2 also carries the
published scores of every release of the model zoo (`pretrained.CATALOGUE`: PANNs, EfficientAT),
so an imported run is reported beside its authors' number."""

from __future__ import annotations

from ..pretrained import CATALOGUE

# Table 2: row → {score name in metrics.SCORES: value}; a score the paper does not report has no entry.
TABLE2: dict[str, dict[str, float]] = {
    name: {"mAP": m, "mAUC": auc, "d_prime": d} for name, m, auc, d in (
        ("Hershey et al. (baseline)", 0.314, 0.959, 2.452),
        ("Yu et al.", 0.360, 0.970, 2.660),
        ("Kong et al.", 0.369, 0.969, 2.640),
        ("ResNet A", 0.347, 0.966, 2.582),
        ("ResNet B", 0.329, 0.966, 2.584),
        ("ResNet B + att", 0.379, 0.970, 2.657),
        ("ResNet B + att (Avg)", 0.392, 0.971, 2.682),
        ("ResNet C + att", 0.360, 0.966, 2.587),
        ("ResNet D + att", 0.380, 0.970, 2.655),
    )}
TABLE2.update({release.row: release.published for release in CATALOGUE.values()})

# model name → its Table-2 row (the peak epoch; the "(Avg)" row follows by name)
MODEL_ROWS: dict[str, str] = {
    "resnet_a": "ResNet A", "resnet_b": "ResNet B", "resnet_b_att": "ResNet B + att", "resnet_c_att": "ResNet C + att",
    "resnet_d_att": "ResNet D + att", "yu_multilevel_att": "Yu et al.", "kong_att": "Kong et al.",
    **{release.model: release.row for release in CATALOGUE.values() if release.name.startswith("panns_")}}

# Table 3: macro event F1 %, 200 ms collar unless noted, on DCASE 2018 task 4's (test, eval) sets.
TABLE3: dict[str, tuple[float | None, float | None]] = {
    "DCASE baseline": (14.06, None),
    "JiaKai": (25.9, 32.4),
    "0.5 thresholds": (9.83, 6.70),
    "swept thresholds": (12.41, 8.70),
    "median filter + swept thresholds": (17.87, 11.50),
    "median filter + swept thresholds, 0.4 s collar": (31.25, 22.26),
}
BEST_SETTING = "median filter + swept thresholds"  # Table 4 reports this setting
DCASE_BASELINE = "DCASE baseline"

# Table 4: per-class event F1 % of (the paper's best system, the DCASE baseline) on the test set.
TABLE4: dict[str, tuple[float, float]] = {
    "Alarm_bell_ringing": (9.8, 3.9), "Blender": (3.4, 15.4), "Cat": (40.0, 0.0), "Dishes": (20.5, 0.0),
    "Dog": (21.1, 0.0), "Electric_shaver_toothbrush": (24.5, 32.4), "Frying": (12.5, 31.0),
    "Running_water": (1.9, 11.4), "Speech": (27.3, 0.0), "Vacuum_cleaner": (17.9, 46.5),
}

FIGURE_LABELS = ("Alarm_bell_ringing", "Frying", "Cat", "Electric_shaver_toothbrush")  # Figure 2's classes


def table2_row(model: str, variant: str, release: str | None = None) -> str | None:
    """The name of the paper's Table-2 row for `model`'s `variant` ("peak", "avg", "ema"), if any; a
    run imported from the zoo (`release`: its catalogue name) is reported beside its release's row."""
    name = CATALOGUE[release].row if release in CATALOGUE else MODEL_ROWS.get(model)
    if name is None:
        return None
    wanted = f"{name} (Avg)" if variant == "avg" else name
    return wanted if wanted in TABLE2 else None
