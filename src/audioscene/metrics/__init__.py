"""Scores: clip tagging (`tagging`: AP, AUC, d′ of Table 2) and sound events (`events`: event-based
F1 of Tables 3-4, segment-based F1). Pure functions over arrays and event lists."""

from .events import EventScores, event_f1, segment_f1
from .tagging import SCORES, average_precision, d_prime, roc_auc, summarize

__all__ = ["SCORES", "EventScores", "average_precision", "d_prime", "event_f1", "roc_auc", "segment_f1", "summarize"]
