"""Writes psds_reference.json: random reference events and detections at several operating points,
with the PSDS that the reference implementation, psds_eval 0.5.3, gives for them. psds_eval does not
run under numpy 2 / pandas 3 (which the project uses), so it runs here in its own environment:

    python -m venv /tmp/psdsenv && /tmp/psdsenv/bin/pip install numpy==1.26.4 pandas==2.2.3 psds_eval==0.5.3 matplotlib
    /tmp/psdsenv/bin/python tests/data/make_psds_reference.py

`tests/test_metrics.py` checks `audioscene.metrics.psds` against the numbers stored.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from psds_eval import PSDSEval

warnings.simplefilter("ignore")
rng = np.random.default_rng(7)
labels = ["Cat", "Dog", "Speech"]
files = {f"f{i:02d}.wav": 10.0 for i in range(12)}


def merged(events):
    """Events of one class in one file may not overlap (psds_eval refuses them): join overlapping ones."""
    out = []
    for event in sorted(events, key=lambda e: (e[0], e[3], e[1])):
        if out and out[-1][0] == event[0] and out[-1][3] == event[3] and event[1] <= out[-1][2]:
            out[-1][2] = max(out[-1][2], event[2])
        else:
            out.append(list(event))
    return out


reference = []
for name in files:
    for _ in range(rng.integers(0, 4)):
        onset = round(float(rng.uniform(0, 8)), 2)
        reference.append([name, onset, round(min(10.0, onset + float(rng.uniform(0.3, 3))), 2), str(rng.choice(labels))])
reference = merged(reference)
points = []
for looseness in np.linspace(0.0, 1.0, 6):
    detections = []
    for name, onset, offset, label in reference:
        if rng.random() < 0.8 - 0.5 * looseness:  # a hit, with jittered boundaries
            on = max(0.0, onset + float(rng.normal(0, 0.3 * looseness + 0.05)))
            off = min(10.0, offset + float(rng.normal(0, 0.3 * looseness + 0.05)))
            if off > on:
                detections.append([name, round(on, 2), round(off, 2), label if rng.random() > 0.1 else "Dog"])
    for _ in range(int(2 + 10 * looseness)):  # false alarms
        name = str(rng.choice(list(files)))
        onset = round(float(rng.uniform(0, 9)), 2)
        detections.append([name, onset, round(onset + float(rng.uniform(0.2, 1.0)), 2), str(rng.choice(labels))])
    points.append(merged(detections))
columns = ["filename", "onset", "offset", "event_label"]
scores = {}
for name, (dtc, gtc, cttc, alpha_ct, alpha_st) in {"psds1": (0.7, 0.7, 0.3, 0.0, 1.0),
                                                    "psds2": (0.1, 0.1, 0.3, 0.5, 1.0),
                                                    "plain": (0.5, 0.5, 0.3, 0.0, 0.0)}.items():
    evaluator = PSDSEval(dtc, gtc, cttc, ground_truth=pd.DataFrame(reference, columns=columns),
                         metadata=pd.DataFrame(list(files.items()), columns=["filename", "duration"]))
    for detections in points:
        evaluator.add_operating_point(pd.DataFrame(detections, columns=columns))
    scores[name] = {"dtc": dtc, "gtc": gtc, "cttc": cttc, "alpha_ct": alpha_ct, "alpha_st": alpha_st,
                    "max_efpr": 100.0, "psds": evaluator.psds(alpha_ct, alpha_st, 100.0).value,
                    "tpr": [list(map(float, tpr)) for tpr in evaluator.operating_points.tpr]}
out = Path(__file__).with_name("psds_reference.json")
out.write_text(json.dumps({"labels": labels, "files": files, "reference": reference, "points": points,
                           "scores": scores}, indent=1) + "\n")
print({k: v["psds"] for k, v in scores.items()})
