"""Secrets never leave in an export: API keys and the goal's secret env values are redacted.

Redacted are the values of the exporting environment's credential variables (``*_API_KEY``,
``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``), the goal's secret env (``config["secret_env"]``:
a list of variable names read from the environment, or a name -> value mapping), and anything
shaped like a well-known API key, wherever it appears (the model may have printed one).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Mapping

CREDENTIAL_NAME = re.compile(r"API_KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL", re.IGNORECASE)
KEY_SHAPES = re.compile(
    r"sk-ant-[A-Za-z0-9_-]{16,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
)
MIN_SECRET = 6  # shorter values would redact ordinary words


def secret_values(goal: Any, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """value -> the name it is redacted as."""
    env = os.environ if environ is None else environ
    named = {k: v for k, v in env.items() if CREDENTIAL_NAME.search(k)}
    declared = (getattr(goal, "config", None) or {}).get("secret_env") or {}
    if isinstance(declared, Mapping):
        named.update({str(k): str(v) for k, v in declared.items()})
    else:
        named.update({str(k): env[k] for k in declared if k in env})
    return {v: k for k, v in named.items() if v and len(v) >= MIN_SECRET}


def redactor(goal: Any, environ: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """A function that redacts the goal's secrets (plain and JSON-escaped) in a text."""
    forms: dict[str, str] = {}
    for value, name in secret_values(goal, environ).items():
        forms[value] = forms[json.dumps(value)[1:-1]] = f"[redacted {name}]"
    pattern = re.compile("|".join(re.escape(v) for v in sorted(forms, key=len, reverse=True))) if forms else None

    def redact(text: str) -> str:
        if pattern is not None:
            text = pattern.sub(lambda m: forms[m[0]], text)
        return KEY_SHAPES.sub("[redacted key]", text)

    return redact
