"""Metric goals with honest numbers.

``--metric CMD --target "<= 1.5" [--unit s] [--bound X]``: after every check, ``CMD`` runs in the
sandbox and the last number it prints is the measurement; its absolute value is journaled
(``metric`` events). The goal succeeds only when the check passes *and* an accepted measurement
meets the target. A jump of more than ``jump``x from the last accepted value in one step, or a
value past the physical ``bound`` (below it for a lower-is-better target, above it for a
higher-is-better one), is not believed until an auditor sub-agent (fresh context, read-only
tools) has checked the measurement for the known traps; a rejected figure does not count and the
agent is told why (``metric_audit`` events).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

from tenax.core.engine import TurnContext
from tenax.core.errors import ConfigError
from tenax.core.protocols import Sandbox
from tenax.goal.guards import Guard

OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge,
                                                  ">": operator.gt}
_TARGET = re.compile(r"^\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
TRAPS = ("a warm cache, or a warm-up run being measured; synthetic, tiny or changed input; work disabled or skipped; "
         "timing of the wrong thing; a relative figure instead of an absolute one")
Auditor = Callable[[str, str], "tuple[bool, str]"]  # (task, session_id) -> (honest, findings)


@dataclass
class MetricSpec:
    command: str
    target: str  # "<= 1.5"
    unit: str = ""
    bound: float | None = None  # a physical limit: a value past it is audited
    jump: float = 10.0  # a change by more than this factor in one step is audited
    timeout: float = 900.0

    @classmethod
    def of(cls, raw: dict[str, Any]) -> "MetricSpec":
        """Validated, with errors that name the option."""
        if not isinstance(raw.get("command"), str) or not raw["command"].strip():
            raise ConfigError("--metric needs a command that prints a number")
        if not isinstance(raw.get("target"), str) or not _TARGET.match(raw["target"]):
            raise ConfigError(f"--target {raw.get('target')!r} is not a comparison; write e.g. '<= 1.5' or '>= 200'")
        spec = cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and v is not None})
        for name in ("bound", "jump", "timeout"):
            v = getattr(spec, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ConfigError(f"metric {name} must be a finite number, got {v!r}")
        if spec.jump <= 1:
            raise ConfigError(f"the metric jump factor must be > 1, got {spec.jump}")
        return spec

    def goal(self) -> tuple[str, float]:
        m = _TARGET.match(self.target)
        assert m is not None
        return m[1], float(m[2])

    def met(self, value: float) -> bool:
        op, limit = self.goal()
        return OPS[op](value, limit)

    def lower_is_better(self) -> bool:
        return self.goal()[0].startswith("<")

    def better(self, value: float, than: float) -> bool:
        return value < than if self.lower_is_better() else value > than

    def suspicious(self, value: float, previous: float | None) -> str | None:
        if self.bound is not None and (value < self.bound if self.lower_is_better() else value > self.bound):
            return f"{value:g} is past the physical bound {self.bound:g}"
        if previous is None:
            return None
        if value == previous:
            return None
        ratio = math.inf if min(abs(value), abs(previous)) == 0 or value * previous < 0 else \
            max(value / previous, previous / value)
        return f"it changed {ratio:.3g}x in one step ({previous:g} -> {value:g})" if ratio > self.jump else None


def parse_value(output: str) -> float | None:
    numbers = [float(n) for n in _NUMBER.findall(output or "")]
    numbers = [n for n in numbers if math.isfinite(n)]
    return numbers[-1] if numbers else None


class MetricGuard(Guard):
    def __init__(self, sandbox: Sandbox, spec: MetricSpec, objective: str, auditor: Auditor | None):
        self.sandbox, self.spec, self.objective, self.auditor = sandbox, spec, objective, auditor
        self.accepted: float | None = None  # the last believed measurement

    def learn(self, steps: list[Any]) -> None:
        """On resume: the last accepted value in the journal."""
        for s in steps:
            if s.kind == "event" and s.payload.get("type") == "metric" and s.payload.get("accepted"):
                self.accepted = s.payload.get("value")

    def after_check(self, verdict: Any, ctx: TurnContext) -> Any:
        spec, unit = self.spec, f" {self.spec.unit}" if self.spec.unit else ""
        res = self.sandbox.exec(spec.command, timeout=spec.timeout, retry_on_restart=True)
        output = (res.stdout + ("\n" + res.stderr if res.stderr else "")).strip()
        value = parse_value(res.stdout) if res.ok else None
        if value is None:
            ctx.emit({"type": "metric", "value": None, "unit": spec.unit, "accepted": False, "target_met": False,
                      "exit_code": res.exit_code, "output_tail": output[-500:]})
            return self._fail(verdict, f"the metric `{spec.command}` gave no number (exit {res.exit_code}):\n{output[-1500:]}")
        why = spec.suspicious(value, self.accepted)
        accepted, note = True, ""
        if why is not None:
            accepted, findings = self._audit(ctx, value, why, output)
            ctx.emit({"type": "metric_audit", "value": value, "previous": self.accepted, "why": why,
                      "passed": accepted, "findings": findings[-2000:]})
            note = (f"\nAn auditor checked the measurement because {why}: "
                    + ("accepted." if accepted else f"REJECTED; it does not count.\n{findings}"))
        met = accepted and spec.met(value)
        ctx.emit({"type": "metric", "value": value, "unit": spec.unit, "previous": self.accepted, "accepted": accepted,
                  "target": spec.target, "target_met": met})
        improved = accepted and (self.accepted is None or spec.better(value, self.accepted))
        if accepted:
            self.accepted = value
        line = f"Metric `{spec.command}`: {value:g}{unit} (target {spec.target}{unit}).{note}"
        verdict = verdict.model_copy(update={"progress": verdict.progress or improved})
        if verdict.passed and not met:
            return self._fail(verdict, line + ("" if not accepted else " The target is not met yet; keep improving it."))
        return verdict.model_copy(update={"content": f"{verdict.content}\n{line}"})

    def _fail(self, verdict: Any, why: str) -> Any:
        head = "The check passed, but the goal is NOT complete: " if verdict.passed else ""
        return verdict.model_copy(update={"passed": False, "is_error": True, "content": f"{verdict.content}\n{head}{why}"})

    def _audit(self, ctx: TurnContext, value: float, why: str, output: str) -> tuple[bool, str]:
        if self.auditor is None:
            return False, "(no auditor is available to confirm it)"
        task = (
            "Audit a measurement. A coding agent reports a metric that is hard to believe; check it before it counts.\n\n"
            f"OBJECTIVE:\n{self.objective}\n\nMETRIC COMMAND: {self.spec.command}\nVALUE: {value:g} {self.spec.unit}\n"
            f"TARGET: {self.spec.target}\nSUSPICIOUS BECAUSE: {why}\nCOMMAND OUTPUT:\n{output[-3000:]}\n\n"
            f"Inspect the benchmark and the code with your read-only tools. Look for the known traps: {TRAPS}. "
            "Call report with passed=true only if the measurement is honest, else passed=false with what is wrong "
            "in findings."
        )
        try:
            return self.auditor(task, ctx.session_id)
        except Exception as e:  # noqa: BLE001 - a failed audit rejects the figure, it does not end the goal
            return False, f"(the audit failed: {type(e).__name__}: {e})"
