"""Compaction into SQLite memory that never loses the plan: thresholds, handoff summary, the
runtime-kept ledger, its rehydration into a fresh context, the Ralph strategy and ``recall``."""

from tenax.compaction.compactor import SUMMARY_REQUEST, CompactionConfig, Compactor, Ralph, estimate_tokens
from tenax.compaction.ledger import Ledger, build_ledger, render
from tenax.compaction.tools import memory_tools

__all__ = [
    "SUMMARY_REQUEST",
    "CompactionConfig",
    "Compactor",
    "Ralph",
    "Ledger",
    "build_ledger",
    "estimate_tokens",
    "memory_tools",
    "render",
]
