"""Scores: clip tagging (`tagging`: AP, AUC, d′ of Table 2, the table `SCORES`), sound events
(`events`: event-based F1 of Tables 3-4, segment-based F1; `psds`) and the table of detection
scores the report and `sed-eval` show (`detection`: `DETECTION_SCORES`). Pure functions over
arrays and event lists."""

from .detection import DETECTION_SCORES, DetectionScore, Detections, register_detection_score
from .events import EventScores, event_f1, segment_f1
from .tagging import SCORES, average_precision, d_prime, roc_auc, summarize

__all__ = ["DETECTION_SCORES", "SCORES", "DetectionScore", "Detections", "EventScores", "average_precision", "d_prime",
           "event_f1", "register_detection_score", "roc_auc", "segment_f1", "summarize"]
