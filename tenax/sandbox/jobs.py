"""Background jobs: a long build or test run goes on in the sandbox while the agent works or waits.

``start_job(command)`` runs the command detached, as a sandbox *job* (its processes survive the
per-exec reaping and the command timeout; they are killed when the goal ends, with the
container). Its output goes to ``/tmp/tenax-jobs/<id>.log`` and its exit code to ``<id>.rc``.
``job_status(id, tail)`` reports running or the exit code, with the log's tail; ``wait_job(id,
timeout)`` blocks in the runtime (no model call, so no tokens) until the job ends, journaling a
``job_wait`` event when it starts waiting (shown live) and a ``job_done`` event after. Without an
``id`` each tool acts on the most recent job. The command travels in an env var, never spliced
into a shell line.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from tenax.core.messages import ToolCallPart, ToolSpec
from tenax.core.protocols import ToolOutcome

JOBS_DIR = "/tmp/tenax-jobs"
JOB_MARKER = "tenax-jobs"  # the sandbox's job marker shared by every background job
DEFAULT_WAIT_S, MAX_WAIT_S = 600.0, 4 * 3600.0
TAIL_BYTES = 4000
_ID = re.compile(r"^job[0-9]{1,6}$")

_START = (
    f'D={JOBS_DIR}; mkdir -p "$D" && n=$(ls "$D" | sed -n "s/^job\\([0-9]*\\)\\.cmd$/\\1/p" | sort -n | tail -1) && '
    'id="job$(( ${n:-0} + 1 ))" && printf %s "$TENAX_JOB_CMD" > "$D/$id.cmd" || exit 1\n'
    '( bash -c "$TENAX_JOB_CMD" > "$D/$id.log" 2>&1 < /dev/null; echo $? > "$D/$id.rc.tmp"; mv "$D/$id.rc.tmp" "$D/$id.rc" ) '
    '> /dev/null 2>&1 < /dev/null & echo "$id"'
)
_STATUS = (
    f'D={JOBS_DIR}; id="${{TENAX_JOB_ID:-job$(ls "$D" 2>/dev/null | sed -n "s/^job\\([0-9]*\\)\\.cmd$/\\1/p" | sort -n | tail -1)}}"; '
    '[ -f "$D/$id.cmd" ] || { echo "no-job $id"; exit 0; }; '
    'if [ -f "$D/$id.rc" ]; then echo "$id $(cat "$D/$id.rc")"; else echo "$id running"; fi; '
    'tail -c "$TENAX_TAIL" "$D/$id.log" 2>/dev/null'
)


def _spec(name: str, description: str, props: dict[str, Any], required: list[str]) -> ToolSpec:
    return ToolSpec(name=name, description=description, parameters={
        "type": "object", "properties": props, "required": required, "additionalProperties": False})


_ID_PROP = {"type": "string", "description": "The job id start_job returned (default: the most recent job)."}
SPECS = {
    "start_job": _spec("start_job", (
        "Start a long command (a build, a full test run, a benchmark) in the background in /workspace and return "
        "its id at once. Command timeouts do not apply to it; it runs until it ends or the goal ends. Keep working, "
        "check it with job_status, or block on it with wait_job instead of re-running it."),
        {"command": {"type": "string", "description": "The bash command line to run."}}, ["command"]),
    "job_status": _spec("job_status", "Whether a background job still runs or its exit code, with the tail of its output.",
                        {"id": _ID_PROP, "tail": {"type": "integer", "minimum": 1, "maximum": 20000,
                                                  "description": f"Bytes of output to show (default {TAIL_BYTES})."}}, []),
    "wait_job": _spec("wait_job", (
        "Wait until a background job ends (or `timeout` seconds pass) and get its exit code and output tail. "
        "Waiting costs no tokens; use it instead of polling or ending your turn while a job runs."),
        {"id": _ID_PROP, "timeout": {"type": "number", "exclusiveMinimum": 0,
                                     "description": f"Seconds to wait at most (default {DEFAULT_WAIT_S:g})."}}, []),
}


class Jobs:
    def __init__(self, sandbox: Any, *, emit: Callable[[dict[str, Any]], Any] | None = None,
                 poll_s: float = 2.0, sleep: Callable[[float], None] = time.sleep):
        self.sandbox = sandbox
        self.emit = emit or (lambda payload: None)  # journals an event (set once the engine exists)
        self.poll_s, self.sleep = poll_s, sleep

    def tools(self) -> dict[str, tuple[ToolSpec, Callable[[ToolCallPart], ToolOutcome]]]:
        fns = {"start_job": self.start, "job_status": self.status, "wait_job": self.wait}
        return {name: (SPECS[name], lambda call, fn=fn: fn(call.arguments)) for name, fn in fns.items()}

    def start(self, args: dict[str, Any]) -> ToolOutcome:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip() or "\x00" in command:
            return ToolOutcome(is_error=True, content="start_job needs 'command': a non-empty bash command line")
        res = self.sandbox.exec(_START, timeout=30, env={"TENAX_JOB_CMD": command}, job=JOB_MARKER)
        job = res.stdout.strip().splitlines()[-1] if res.ok and res.stdout.strip() else ""
        if not _ID.match(job):
            return ToolOutcome(is_error=True, content=f"start_job failed (exit {res.exit_code}): {res.stderr.strip()[:500]}")
        self.emit({"type": "job_started", "job": job, "command": command[:500]})
        return ToolOutcome(content=f"started {job} in the background (output: {JOBS_DIR}/{job}.log). "
                                   f"Check it with job_status or block on it with wait_job.")

    def _state(self, args: dict[str, Any], tail: int = TAIL_BYTES) -> tuple[str, str | None, str] | ToolOutcome:
        """(id, exit code or None while it runs, output tail), or an error outcome."""
        job = args.get("id")
        if job is not None and (not isinstance(job, str) or not _ID.match(job)):
            return ToolOutcome(is_error=True, content=f"unknown job id {job!r}; ids look like job1 (see start_job)")
        env = {"TENAX_TAIL": str(tail), **({"TENAX_JOB_ID": job} if job else {})}
        res = self.sandbox.exec(_STATUS, timeout=30, env=env, max_output_chars=tail + 1000)
        head, _, log = res.stdout.partition("\n")
        words = head.split()
        if len(words) != 2 or words[0] == "no-job":
            return ToolOutcome(is_error=True, content=f"no such job {job or '(none started yet)'}; start one with start_job")
        return words[0], None if words[1] == "running" else words[1], log

    def _render(self, state: tuple[str, str | None, str], extra: str = "") -> ToolOutcome:
        job, rc, log = state
        head = f"{job}: still running{extra}" if rc is None else f"{job}: finished, exit code {rc}{extra}"
        return ToolOutcome(content=f"{head}\n--- output tail ---\n{log.rstrip() or '(no output yet)'}",
                           is_error=rc is not None and rc != "0")

    def status(self, args: dict[str, Any]) -> ToolOutcome:
        tail = args.get("tail", TAIL_BYTES)
        if isinstance(tail, bool) or not isinstance(tail, int) or not 1 <= tail <= 20000:
            return ToolOutcome(is_error=True, content="job_status 'tail' must be a whole number of bytes, 1..20000")
        state = self._state(args, tail)
        return state if isinstance(state, ToolOutcome) else self._render(state)

    def wait(self, args: dict[str, Any]) -> ToolOutcome:
        timeout = args.get("timeout", DEFAULT_WAIT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
            return ToolOutcome(is_error=True, content="wait_job 'timeout' must be a positive number of seconds")
        timeout = min(float(timeout), MAX_WAIT_S)
        state = self._state(args)
        if isinstance(state, ToolOutcome) or state[1] is not None:
            return state if isinstance(state, ToolOutcome) else self._render(state)
        started = time.monotonic()
        self.emit({"type": "job_wait", "job": state[0], "timeout_s": timeout})
        while state[1] is None and (left := timeout - (time.monotonic() - started)) > 0:
            self.sleep(min(self.poll_s, left))
            got = self._state({"id": state[0]})
            if isinstance(got, ToolOutcome):
                return got
            state = got
        waited = round(time.monotonic() - started, 1)
        self.emit({"type": "job_done" if state[1] is not None else "job_wait_timeout", "job": state[0],
                   "exit_code": state[1], "waited_s": waited})
        return self._render(state, f" (waited {waited:g}s)" if state[1] is not None else
                            f" after waiting {waited:g}s; wait again or check it later")
