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
COLUMNS = ["filename", "onset", "offset", "event_label"]
SETTINGS = {"psds1": (0.7, 0.7, 0.3, 0.0, 1.0), "psds2": (0.1, 0.1, 0.3, 0.5, 1.0), "plain": (0.5, 0.5, 0.3, 0.0, 0.0)}


def merged(events):
    """Events of one class in one file may not overlap (psds_eval refuses them): join overlapping ones."""
    out = []
    for event in sorted(events, key=lambda e: (e[0], e[3], e[1])):
        if out and out[-1][0] == event[0] and out[-1][3] == event[3] and event[1] <= out[-1][2]:
            out[-1][2] = max(out[-1][2], event[2])
        else:
            out.append(list(event))
    return out


def random_case(labels, reference_labels, files, short_share=0.0, empty_points=0):
    """References of `reference_labels` only (the others of `labels` have none), detections of any of
    `labels` at six operating points of growing looseness; `short_share` of the hits last 0.02-0.1 s;
    `empty_points` operating points without any detection (a threshold above every score)."""
    reference = []
    for name, duration in files.items():
        for _ in range(rng.integers(0, 4)):
            onset = round(float(rng.uniform(0, duration - 2)), 2)
            length = float(rng.uniform(0.02, 0.1)) if rng.random() < short_share else float(rng.uniform(0.3, 3))
            reference.append([name, onset, round(min(duration, onset + length), 2), str(rng.choice(reference_labels))])
    reference = [e for e in merged(reference) if e[2] > e[1]]
    points = []
    for looseness in np.linspace(0.0, 1.0, 6):
        detections = []
        for name, onset, offset, label in reference:
            if rng.random() < 0.8 - 0.5 * looseness:  # a hit, with jittered boundaries
                on = max(0.0, onset + float(rng.normal(0, 0.3 * looseness + 0.02)))
                off = min(files[name], offset + float(rng.normal(0, 0.3 * looseness + 0.02)))
                if off > on:
                    detections.append([name, round(on, 2), round(off, 2), label if rng.random() > 0.1 else labels[0]])
        for _ in range(int(2 + 10 * looseness)):  # false alarms, of any class
            name = str(rng.choice(list(files)))
            onset = round(float(rng.uniform(0, files[name] - 1)), 2)
            detections.append([name, onset, round(onset + float(rng.uniform(0.2, 1.0)), 2), str(rng.choice(labels))])
        points.append([e for e in merged(detections) if e[2] > e[1]])
    return {"labels": labels, "files": files, "reference": reference, "points": points + [[]] * empty_points}


def scored(case):
    gt = pd.DataFrame(case["reference"], columns=COLUMNS)
    metadata = pd.DataFrame(list(case["files"].items()), columns=["filename", "duration"])
    case["scores"] = {}
    for name, (dtc, gtc, cttc, alpha_ct, alpha_st) in SETTINGS.items():
        evaluator = PSDSEval(dtc, gtc, cttc, ground_truth=gt, metadata=metadata)
        for detections in case["points"]:
            evaluator.add_operating_point(pd.DataFrame(detections, columns=COLUMNS))
        case["scores"][name] = {"dtc": dtc, "gtc": gtc, "cttc": cttc, "alpha_ct": alpha_ct, "alpha_st": alpha_st,
                                "max_efpr": 100.0, "psds": evaluator.psds(alpha_ct, alpha_st, 100.0).value,
                                "classes": list(evaluator.class_names),
                                "tpr": [list(map(float, tpr)) for tpr in evaluator.operating_points.tpr]}
    return case


cases = {
    "three classes, 12 files of 10 s": random_case(["Cat", "Dog", "Speech"], ["Cat", "Dog", "Speech"],
                                                  {f"f{i:02d}.wav": 10.0 for i in range(12)}),
    # a label without reference events (a user's eval set often lacks a class), files of different
    # durations, very short events and thresholds that detect nothing
    "a class without references": random_case(["Bird", "Cat", "Dog", "Speech"], ["Cat", "Dog", "Speech"],
                                              {f"g{i:02d}.wav": float(d) for i, d in
                                               enumerate(rng.uniform(3, 72, 14).round(1))},
                                              short_share=0.3, empty_points=2),
    "the smallest such case": {"labels": ["Bird", "Cat", "Dog"], "files": {"a.wav": 72.0},
                               "reference": [["a.wav", 0.0, 1.0, "Cat"], ["a.wav", 2.0, 3.0, "Dog"]],
                               "points": [[["a.wav", 0.0, 1.0, "Cat"], ["a.wav", 2.0, 3.0, "Dog"],
                                           ["a.wav", 5.0, 6.0, "Bird"]]]},
}
for i in range(3):
    cases[f"random with a class without references, {i}"] = random_case(
        ["Cat", "Dog", "Speech", "Whistle"], ["Cat", "Dog", "Speech"],
        {f"h{j:02d}.wav": float(d) for j, d in enumerate(rng.uniform(5, 40, 10).round(1))}, short_share=0.1)
for case in cases.values():
    scored(case)
out = Path(__file__).with_name("psds_reference.json")
out.write_text(json.dumps(cases, indent=1) + "\n")
print({name: {k: round(v["psds"], 4) for k, v in case["scores"].items()} for name, case in cases.items()})
