"""Local token estimates for servers that report no usage (and for sizing checks).

About four characters per token: not any real tokenizer, but the right order of magnitude for
English text and code, so budgets and compaction keep working. Responses built from these
figures carry ``estimated=True``.
"""

from __future__ import annotations

import json
import math
from typing import Any

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def estimate_json_tokens(obj: Any) -> int:
    """Estimated tokens of ``obj`` as the compact JSON a request carries."""
    return estimate_tokens(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str))


def estimate_body_tokens(body: bytes) -> int:
    """Estimated tokens of an encoded request body (its JSON syntax counted as text)."""
    return estimate_tokens(body.decode("utf-8", "replace"))
