"""tenax command line. Thin: parse, call the library, render with rich."""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tenax.core.errors import ConfigError, TenaxError
from tenax.core.status import ENDED, FINAL, GoalStatus
from tenax.export.describe import Part, duration as _duration, event_line as _event_line, short as _short

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    context_settings=HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(context_settings=HELP, no_args_is_help=True, help="Build and clean up the sandbox.")
app.add_typer(sandbox_app, name="sandbox")
config_app = typer.Typer(context_settings=HELP, no_args_is_help=True, help="The effective configuration.")
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"tenax {version('tenax')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="Print tenax's version and exit."),
) -> None:
    """tenax: drive a coding agent to a verified goal inside a hardened Docker sandbox."""


# Untrusted text (model output, tool output, objectives, error messages quoting them) is data.
# Neither console parses markup or emoji codes in a plain str; styles come only from `say`'s
# (text, style) pairs, and tables get plain cells.
# Piped output (scripts, `| grep`, CI logs) is not cropped to 80 columns: ids and tables stay whole.
_PIPED_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, width=_PIPED_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def say(*parts: Part, err: bool = False) -> None:
    """Print one line. A str part is shown verbatim; a (text, style) pair is shown styled."""
    (err_console if err else console).print(Text.assemble(*parts))


def _table(*columns: str, rows: Iterable[Iterable[Any]], **kw: Any) -> Table:
    """A plain table; the first column (an id) is never wrapped or cut, the last one gives way."""
    t = Table(box=None, **kw)
    for i, name in enumerate(columns):
        t.add_column(name, no_wrap=i == 0, min_width=len(name), ratio=1 if i == len(columns) - 1 else None)
    for row in rows:
        t.add_row(*(Text(str(c)) for c in row))
    return t


def _store() -> Any:
    from tenax.store import open_store

    return open_store()


def _stop_on_sigterm() -> None:
    """`kill PID` ends a running goal the way Ctrl-C does: status `stopped`, resumable."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _fail(e: Exception | str, code: int = 2) -> NoReturn:
    say(("error:", "bold red"), " ", str(e), err=True)
    raise typer.Exit(code)


# -- rendering --------------------------------------------------------------------------------
def render_event(kind: str, p: dict[str, Any]) -> None:
    """The engine's on_event hook: one journal step as terminal lines. A display fault is reported,
    never raised into the run."""
    try:
        _render(kind, p)
    except Exception as e:  # noqa: BLE001 - the display must never end an unattended run
        say((f"(cannot display a {kind} step: {type(e).__name__}: {_short(str(e), 200)})", "dim"), err=True)


def _render(kind: str, p: dict[str, Any]) -> None:
    if kind == "assistant":
        for part in p["message"]["parts"]:
            if part["type"] == "text" and part["text"].strip():
                say(("model", "cyan"), " ", _short(part["text"], 160))
            elif part["type"] == "tool_call":
                say(("  → " + _short(part["name"], 60), "magenta"), " ", _short(part["arguments"]))
    elif kind == "tool_result":
        say(("  ← " + _short(p["content"], 140), "red" if p.get("is_error") else "dim"))
    elif kind == "user" and p.get("why") == "steering":
        say(("steering (you)", "yellow"), " ", _short(p.get("verbatim", p["text"]), 140))
    elif kind == "user" and p.get("why") not in ("objective", "task"):
        say(("runtime", "yellow"), f" {p.get('why')}: ", _short(p["text"], 120))
    elif kind == "compaction":
        rng = p.get("archived")
        arch = f"archived steps {rng[0]}-{rng[1]}" if rng else "nothing archived"
        say(("compaction", "bold blue"), f" ({p.get('mode')}, {p.get('reason')}): ~{p.get('tokens_before', 0):,} -> "
            f"~{p.get('tokens_after', 0):,} tokens, {arch}, kept {p.get('kept_turns', 0)} turn(s)")
    elif kind == "event" and (line := _event_line(p)):
        say(*line)


def _require(option: str, value: float | int | None, what: str, ok: Callable[[Any], bool] = lambda v: v > 0) -> None:
    """Refuse a numeric option (nan, inf, zero, negative, out of range) with its name and value."""
    if value is not None and not ((isinstance(value, int) or math.isfinite(value)) and ok(value)):
        raise ConfigError(f"{option} must be {what}, got {value}")


_COUNT = "a positive whole number (at most 1000000)"


def _count_ok(v: int) -> bool:
    return 0 < v <= 1_000_000


def _budgets(max_turns: Optional[int], max_usd: Optional[float], max_tokens: Optional[int], max_minutes: Optional[float], base: Any = None) -> Any:
    from tenax.core.budget import Budgets

    values = dict(base or {})
    for k, v in (("max_turns", max_turns), ("max_usd", max_usd), ("max_tokens", max_tokens), ("max_minutes", max_minutes)):
        _require("--" + k.replace("_", "-"), v, "a positive whole number" if k in ("max_turns", "max_tokens")
                 else "a finite positive number")
        if v is not None:
            values[k] = v
    return Budgets.parse(**values)


# How `tenax goal` / `resume` exit, by the goal's status (any other status: 1). Bad input exits 2.
EXIT_CODES = {"succeeded": 0, "failed": 1, "bad input": 2, "budget_exhausted": 3, "stuck": 4, "waiting": 5,
              "stopped": 130, "paused": 130}
_JSON_HELP = ("Print the journal as JSON lines (the schema of tenax export --format jsonl) on stdout, "
              "everything else on stderr. Exit 0 succeeded, 1 failed, 2 bad input, 3 budget exhausted, "
              "4 stuck, 5 waiting, 130 stopped or paused.")


def _watch(store: Any, goal_id: str, as_json: bool, run: Callable[[Callable[[str, dict[str, Any]], None]], str]) -> NoReturn:
    """Run a goal with the terminal view (or the --json stream), then exit with its status's code."""
    from tenax.export.otel import missing_extra

    if note := missing_extra():
        say(("note:", "yellow"), " ", note, err=True)
    if as_json:
        from tenax.export.stream import JsonStream

        stream = JsonStream(store, goal_id, lambda line: (sys.stdout.write(line), sys.stdout.flush()))
        stream.start()
        status = run(stream)
        stream.finish()
    elif err_console.is_terminal:  # a status line under the transcript (on stderr if stdout is not a terminal)
        from tenax.app import fan_out
        from tenax.export.live import live_status

        live, line = live_status(console if console.is_terminal else err_console, store, goal_id)
        with live:
            status = run(fan_out(render_event, line))
    else:
        status = run(render_event)
    _final(store, goal_id, status, err=as_json)
    raise typer.Exit(EXIT_CODES.get(status, 1))


def _final(store: Any, goal_id: str, status: str, err: bool = False) -> None:
    goal = store.get_goal(goal_id)
    color = {"succeeded": "green", "budget_exhausted": "yellow", "stopped": "yellow"}.get(status, "red")
    say(err=err)
    say((status, f"bold {color}"), f" goal {goal.id} after {goal.turns} turns, ${goal.cost_usd:.4f}", err=err)
    if goal.error:
        say((goal.error, "red"), err=err)
    if status == "stopped":
        say(f"resume with: tenax resume {goal.id}", err=err)
    _summary(store, goal_id, err)


def _summary(store: Any, goal_id: str, err: bool) -> None:
    """The end-of-run summary: why it ended, the last check, what changed, what it cost, the transcript."""
    from tenax.export.summary import COST_COLUMNS, end_summary

    s = end_summary(store, goal_id)
    out = err_console if err else console
    say(("why: ", "bold"), s.why or "(no reason recorded)", err=err)
    say(("last check: ", "bold"), *(s.check or ["(none ran)"]), err=err)
    say(("changes:", "bold"), "" if s.diff else " none", err=err)
    for line in s.diff:
        say("  " + line, err=err)
    out.print(_table("model", "calls", *COST_COLUMNS, rows=s.by_model, title="cost per model"))
    out.print(_table("agent", "role", "model", "status", *COST_COLUMNS, rows=s.by_agent, title="cost per agent"))
    say(("export the transcript: ", "bold"), s.transcript, err=err)


def _guards(stuck_after: int, step_backs: int, idle_turns: int) -> dict[str, int]:
    _require("--stuck-after", stuck_after, "a whole number >= 2", lambda v: v >= 2)
    _require("--step-backs", step_backs, "a whole number >= 0", lambda v: v >= 0)
    _require("--no-progress-turns", idle_turns, "a whole number >= 2", lambda v: v >= 2)
    return {"repeat": stuck_after, "step_backs": step_backs, "no_progress_turns": idle_turns}


# -- commands ---------------------------------------------------------------------------------
@app.command("goal")
def goal_cmd(
    ctx: typer.Context,
    objective: str = typer.Argument(..., help="What to achieve, in plain words."),
    workspace: Path = typer.Option(Path("."), "--workspace", "-w", help="Repository to work in (mounted at /workspace)."),
    check: Optional[str] = typer.Option(None, "--check", "-c", help="Command that must exit 0 in the sandbox for success."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="provider:model, e.g. anthropic:claude-sonnet-4-6, openai:gpt-5.5, openai-chat:qwen3@http://localhost:8000/v1"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Override the provider's API base URL (OpenAI-compatible servers, proxies)."),
    network: str = typer.Option("none", "--network", help="Docker network for the sandbox; 'none' (default) cuts it off."),
    allow_host: list[str] = typer.Option([], "--allow-host", help="HOST[:PORT] the sandbox may reach through tenax's filtering proxy (repeatable; default ports 80 and 443; also TENAX_ALLOW_HOSTS). Every request is journaled."),
    max_turns: Optional[int] = typer.Option(None, "--max-turns", help="Stop after N model turns (default 200)."),
    max_usd: Optional[float] = typer.Option(None, "--max-usd", help="Stop after spending this many USD."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Stop after N uncached input + output tokens."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop after this much wall time."),
    price: Optional[str] = typer.Option(None, "--price", help="USD per million input/output tokens for a model tenax has no price for, e.g. 0.2/0.8 (needed for --max-usd then)."),
    strategy: str = typer.Option("continuous", "--strategy", help="continuous (compact when the context fills) or ralph (fresh context each iteration, memory from the ledger)."),
    compact_at: Optional[float] = typer.Option(None, "--compact-at", help="Compact when the context reaches this fraction of the model's window (default 0.8)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Command printing a number, run after each check; success also needs --target met."),
    target: Optional[str] = typer.Option(None, "--target", help="What the metric must reach, e.g. '<= 1.5' or '>= 200'."),
    unit: str = typer.Option("", "--unit", help="The metric's unit, e.g. s or req/s (shown with every value)."),
    bound: Optional[float] = typer.Option(None, "--bound", help="A physical limit: a metric value past it is audited before it counts."),
    jump: float = typer.Option(10.0, "--metric-jump", help="A metric change by more than this factor in one step is audited."),
    protect: list[str] = typer.Option([], "--protect", help="Glob of acceptance files the agent may not change (repeatable); the check's own script is always protected."),
    stuck_after: int = typer.Option(3, "--stuck-after", help="Step back when the same failure repeats this many times without progress."),
    step_backs: int = typer.Option(2, "--step-backs", help="Reviewer step-backs on one failure before a fresh context, then the goal ends stuck."),
    idle_turns: int = typer.Option(40, "--no-progress-turns", help="Step back after this many turns without a workspace change or a new check result."),
    bg: bool = typer.Option(False, "--bg", help="Queue the goal for the background daemon and print its id at once (starts the daemon if none runs). `tenax submit` is the same."),
    after: Optional[str] = typer.Option(None, "--after", help="Background: start when goal ID succeeds (cancelled if it ends otherwise)."),
    at: Optional[str] = typer.Option(None, "--at", help="Background: not before this time (+30m, 2h, 23:30, 2030-01-31T06:00)."),
    notify: Optional[str] = typer.Option(None, "--notify", help="Background: command run when the goal ends or gets stuck (env TENAX_GOAL_ID, TENAX_GOAL_STATUS, TENAX_GOAL_SUMMARY)."),
    worktree: Optional[bool] = typer.Option(None, "--worktree/--no-worktree", help="Background: work in a git worktree on branch tenax/<id> (default in a git repository)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Run a goal until its check passes or a budget runs out (--bg: in the background daemon).

    Example: tenax goal "make the tests pass" -w ~/src/app -c "pytest -q" --max-usd 5
    """
    from tenax.app import GoalRequest, create_goal, parse_price, run_goal

    try:
        from tenax.app import default_budgets

        budgets = _budgets(max_turns, max_usd, max_tokens, max_minutes, base=default_budgets())
        given_price = parse_price(price) if price is not None else None
        _require("--compact-at", compact_at, "a fraction between 0.05 and 1.0", lambda v: 0.05 <= v <= 1.0)
        store = _store()
        req = GoalRequest(objective=objective, workspace=str(workspace), check=check, model=model, base_url=base_url,
                          network=network, allow_hosts=list(allow_host) or None, budgets=budgets, strategy=strategy,
                          compaction={"threshold": compact_at} if compact_at is not None else None,
                          protect=list(protect) or None, guards=_guards(stuck_after, step_backs, idle_turns),
                          metric={"command": metric, "target": target, "unit": unit, "bound": bound, "jump": jump}
                          if metric or target else None, price=given_price)
        if bg or ctx.info_name == "submit" or any(v is not None for v in (after, at, notify, worktree)):
            from tenax.daemon.commands import queue_goal

            if as_json:
                raise ConfigError("--json streams a goal that runs here; a background goal runs in the daemon: "
                                  "leave out --json (follow it with tenax logs ID -f) or leave out --bg")
            return queue_goal(store, req, after=after, at=at, notify=notify, worktree=worktree)
        goal_id = create_goal(store, req)
        _stop_on_sigterm()
        say("goal ", (goal_id, "bold"), f" started; model {store.get_goal(goal_id).model}", err=as_json)
        _watch(store, goal_id, as_json, lambda on_event: run_goal(store, goal_id, on_event=on_event))
    except TenaxError as e:
        _fail(e)


@app.command("resume")
def resume_cmd(
    goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Must match the goal's model (switching is refused)."),
    max_turns: Optional[int] = typer.Option(None, "--max-turns"),
    max_usd: Optional[float] = typer.Option(None, "--max-usd"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes"),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Continue an interrupted goal from its journal (raise budgets with --max-*).

    Example: tenax resume 3f2a --max-usd 10
    """
    try:
        changed = any(v is not None for v in (max_turns, max_usd, max_tokens, max_minutes))
        _budgets(max_turns, max_usd, max_tokens, max_minutes)  # refuse bad numbers before touching the store
        store = _store()
        goal = store.get_goal(goal_id)
        budgets = _budgets(max_turns, max_usd, max_tokens, max_minutes, base=goal.budgets) if changed else None
        if goal.background:  # the daemon's goal: queue it again rather than run it here
            from tenax.daemon.control import resume_background

            if budgets is not None:
                store.update_goal(goal.id, budgets=budgets.model_dump())
            return say(resume_background(store, store.get_goal(goal.id)), err=as_json)
        from tenax.app import run_goal  # slow to import: only once the goal is known

        say("resuming goal ", (goal.id, "bold"), f" ({goal.status}, {goal.turns} turns so far)", err=as_json)
        _stop_on_sigterm()
        _watch(store, goal.id, as_json, lambda on_event: run_goal(store, goal.id, model_override=model,
                                                                  budgets=budgets, on_event=on_event))
    except TenaxError as e:
        _fail(e)


@app.command("ls")
def ls_cmd(
    status: Optional[str] = typer.Option(None, "--status", help="Only goals with this status."),
    limit: int = typer.Option(30, "--limit", "-n"),
) -> None:
    """List goals, newest first.

    Example: tenax ls --status running -n 10
    """
    try:
        _require("--limit", limit, _COUNT, _count_ok)
        store = _store()
        goals = store.list_goals(limit=limit, status=status)
    except TenaxError as e:
        _fail(e)
    if not goals:
        say("no goals yet; start one with: tenax goal \"...\" --workspace DIR --check \"...\"")
        return
    from tenax.daemon.commands import job_wait, waits_on

    console.print(_table("id", "status", "turns", "cost", "cached", "elapsed", "waits on", "objective", rows=(
        (g.id, g.shown_status, g.turns, f"${g.cost_usd:.4f}", f"{_cached_share(g):.0%}", _duration(g.elapsed_s),
         waits_on(g) or job_wait(store, g), _short(g.objective, 50)) for g in goals)))


def _guard_rows(store: Any, g: Any, sessions: list[Any]) -> list[tuple[str, str]]:
    """What the common-sense guards saw: the metric's values as a sparkline, protected-file attempts."""
    from tenax.export.describe import metric_values, sparkline

    main = next((s for s in sessions if s.role == "main"), None)
    events = store.steps(main.id, kinds=["event"]) if main else []
    rows = []
    values = metric_values(events)
    if values:
        spec = (g.config or {}).get("metric") or {}
        last, believed = values[-1]
        rows.append(("metric", f"{sparkline([v for v, _ in values])}  last {last:g}{spec.get('unit') or ''}"
                               f"{'' if believed else ' (not accepted)'}, target {spec.get('target', '?')}, "
                               f"{len(values)} measurement(s)"))
    attempts = [e.payload for e in events if e.payload.get("type") == "protect_violation"]
    if attempts:
        rows.append(("protected", f"{len(attempts)} attempt(s) to change acceptance files: "
                                  + ", ".join(sorted({str(a.get('path')) for a in attempts}))))
    return rows


def _cached_share(g: Any) -> float:
    """The share of the goal's input tokens read from the prompt cache."""
    total_in = g.input_tokens + g.cache_read_tokens + g.cache_write_tokens
    return (g.cache_read_tokens / total_in) if total_in else 0.0


@app.command("show")
def show_cmd(
    goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix)."),
    events: int = typer.Option(15, "--events", "-e", help="How many recent journal steps to show."),
) -> None:
    """Status, turns, tokens, cost, cache savings and the last events of a goal.

    Example: tenax show 3f2a -e 40
    """
    try:
        _require("--events", events, "zero or " + _COUNT, lambda v: v == 0 or _count_ok(v))
        store = _store()
        g = store.get_goal(goal_id)
        sessions = store.sessions_for_goal(g.id)
        recent = store.recent_steps(g.id, limit=events)
    except TenaxError as e:
        _fail(e)
    total_in = g.input_tokens + g.cache_read_tokens + g.cache_write_tokens
    share = _cached_share(g)
    rows = [
        ("goal", g.id),
        ("status", g.shown_status + (f"  ({g.error})" if g.error else "")),
        ("objective", g.objective),
        ("check", g.check_cmd or "(independent judge)"),
        ("model", g.model),
        ("workspace", g.workspace),
        ("turns", str(g.turns)),
        ("tokens", f"input {g.input_tokens:,} uncached + {g.cache_read_tokens:,} cache read + "
                   f"{g.cache_write_tokens:,} cache write; output {g.output_tokens:,}"),
        ("cached input", f"{share:.1%} of {total_in:,} input tokens"),
        ("cost", f"${g.cost_usd:.4f}  (uncached would be ${g.uncached_cost_usd:.4f}; "
                 f"saved ${max(g.uncached_cost_usd - g.cost_usd, 0):.4f})"),
        ("time", _duration(g.elapsed_s)),
        ("budgets", ", ".join(f"{k}={v}" for k, v in (g.budgets or {}).items() if v is not None)),
    ]
    if g.summary:
        rows.append(("summary", g.summary))
    rows += _guard_rows(store, g, sessions)
    t = _table(rows=rows, show_header=False)
    t.columns[0].style = "bold"
    console.print(t)
    agents = store.agents_for_goal(g.id) if hasattr(store, "agents_for_goal") else []
    if agents:
        console.print(_table("agent", "role", "model", "status", "cost", "depth", "outcome", "task", title="sub-agents",
                             rows=((a.id, a.role, a.model, a.status, f"${a.cost_usd:.4f}", a.depth,
                                    (a.summary or {}).get("outcome") or "", _short(a.task, 60)) for a in agents)))
    ledgered = {a.session_id for a in agents}
    subs = [s for s in sessions if s.role != "main" and s.id not in ledgered]
    if subs:
        console.print(_table("session", "role", "model", "status", title="sub-sessions",
                             rows=((s.id, s.role, s.model, s.status or "") for s in subs)))
    say()
    say(("last events", "bold"))
    for step in recent:
        render_event(step.kind, step.payload)


@app.command("steer")
def steer_cmd(
    goal_id: str = typer.Argument(..., help="Goal id (or a unique prefix)."),
    message: str = typer.Argument(..., help="What the agent should know or do; delivered verbatim before its next model call."),
) -> None:
    """Queue a steering message for a goal; the running loop (or the next resume) picks it up.

    Example: tenax steer 3f2a "use uv, not pip"
    """
    try:
        store = _store()
        goal = store.get_goal(goal_id)
        if goal.status in FINAL:
            raise ConfigError(f"goal {goal.id} has {goal.status}, a final status: nobody will read a steering message. "
                              "Start a new goal instead (tenax goal ...).")
        sid = store.push_steering(goal.id, message)
    except TenaxError as e:
        _fail(e)
    when = "before its next model call" if goal.status not in ENDED and goal.status != GoalStatus.INTERRUPTED \
        else f"when it resumes (tenax resume {goal.id})"
    say(f"queued steering message #{sid} for goal {goal.id} ({goal.status}); the agent sees it {when}")


@app.command("export")
def export_cmd(
    goal_id: str = typer.Argument(...),
    fmt: str = typer.Option("md", "--format", "-f", help="md, jsonl or html (one static file)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write (default: stdout)."),
) -> None:
    """Export a goal's transcript.

    Example: tenax export 3f2a -f md -o night-run.md
    """
    from tenax.export.html import to_html
    from tenax.export.transcript import to_jsonl, to_markdown

    if fmt not in ("md", "jsonl", "html"):
        _fail(TenaxError(f"unknown format {fmt!r}; use md, jsonl or html"))
    try:
        store = _store()
        text = to_markdown(store, goal_id) if fmt == "md" else to_html(store, goal_id) if fmt == "html" \
            else "\n".join(to_jsonl(store, goal_id)) + "\n"
    except TenaxError as e:
        _fail(e)
    if out:
        try:
            out.write_text(text)
        except OSError as e:
            _fail(f"cannot write the export to {str(out)!r}: {e.strerror or e}; pick a writable path for --out")
        say(f"wrote {out}")
    else:
        sys.stdout.write(text)


_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(rf"(?:[A-Za-z0-9.-]+(?::\d+)?/)?{_NAME}(?:/{_NAME})*(?::\w[\w.-]{{0,127}})?")


@config_app.command("show")
def config_show() -> None:
    """Print each setting's effective value and where it came from (TENAX_* env beats the project's
    .tenax/config.toml, which beats ~/.config/tenax/config.toml).

    Example: tenax config show
    """
    import json as _json

    from tenax.config import config_files, load_settings_with_origins

    try:
        settings, origins = load_settings_with_origins()
    except TenaxError as e:
        _fail(e)
    sys.stdout.write("".join(f"# {'user' if i == 0 else 'project'} file: {p}{'' if p.is_file() else ' (none)'}\n"
                             for i, p in enumerate(config_files())))
    for key, value in settings.model_dump().items():
        sys.stdout.write(f"{key} = {_json.dumps(value)}  # {origins[key]}\n")


@sandbox_app.command("build")
def sandbox_build(
    tag: Optional[str] = typer.Option(None, "--tag", help="Image tag (default tenax-sandbox:default or TENAX_IMAGE)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the image exists."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if the image exists (for make setup)."),
) -> None:
    """Build the sandbox image offline (debootstrap + docker import).

    Example: tenax sandbox build --if-missing
    """
    from tenax.config import load_settings
    from tenax.sandbox import build_image, ensure_docker, image_exists

    if tag is not None and not _IMAGE_REF.fullmatch(tag):
        _fail(f"--tag {tag!r} is not a Docker image reference; write name[:tag], e.g. tenax-sandbox:default")
    try:
        tag = tag or load_settings().image
        ensure_docker()
        if image_exists(tag) and not force:
            say(f"image {tag} exists" + ("" if if_missing else "; use --force to rebuild"))
            return
        build_image(tag, force=force, log=lambda m: say((m, "dim")))
        say((f"built {tag}", "green"))
    except TenaxError as e:
        _fail(e, 1)


@sandbox_app.command("cleanup")
def sandbox_cleanup(goal_id: Optional[str] = typer.Option(None, "--goal", help="Only this goal's container.")) -> None:
    """Remove tenax containers (by label).

    Example: tenax sandbox cleanup --goal 3f2a9c01d2e4
    """
    from tenax.sandbox import cleanup_by_label, ensure_docker

    if goal_id is not None and not re.fullmatch(r"[0-9a-zA-Z_.-]+", goal_id):
        _fail(f"--goal {goal_id!r} is not a goal id (see tenax ls); leave --goal out to remove every tenax container")
    try:
        n = cleanup_by_label(ensure_docker(), goal_id=goal_id)
    except TenaxError as e:
        _fail(e, 1)
    say(f"removed {n} container(s)")


@app.command("demo")
def demo_cmd(keep: bool = typer.Option(True, "--keep/--no-keep", help="Keep the demo workspace afterwards.")) -> None:
    """Fix a small failing repo end to end, with a SIMULATED model (no API key needed).

    Example: tenax demo --no-keep
    """
    from tenax.app import GoalRequest, create_goal, run_goal
    from tenax.core.budget import Budgets
    from tenax.testing import Script, Simulator

    demo_pkg = resources.files("tenax") / "demo"
    root = Path(tempfile.mkdtemp(prefix="tenax-demo-"))
    workspace = root / "repo"
    with resources.as_file(demo_pkg / "sample_repo") as src:
        shutil.copytree(src, workspace)
    script = Script.from_yaml((demo_pkg / "script.yaml").read_text())
    say(
        ("Demo: the model is SIMULATED.", "bold yellow"), " A local simulator speaking the real Anthropic API "
        "replays a scripted agent; everything else is real: the Docker sandbox, the check, the SQLite journal."
    )
    say(f"workspace: {workspace}")
    api_key = "sim-demo-key"
    status = "failed"
    try:
        with Simulator(script) as sim:
            store = _store()
            req = GoalRequest(
                objective="Make the test suite pass: fix the bugs in calc.py.",
                workspace=str(workspace), check="python3 -m unittest -q", model="anthropic:claude-sonnet-4-6",
                base_url=sim.url, budgets=Budgets(max_turns=20),
            )
            goal_id = create_goal(store, req, api_key=api_key)
            say("goal ", (goal_id, "bold"), " (check: python3 -m unittest -q)\n")
            status = run_goal(store, goal_id, api_key=api_key, on_event=render_event)
            _final(store, goal_id, status)
            from tenax.export.transcript import to_markdown

            transcript = root / "transcript.md"
            transcript.write_text(to_markdown(store, goal_id))
    except TenaxError as e:
        _fail(e, 1)
    say()
    say(("calc.py now:", "bold"))
    say((workspace / "calc.py").read_text())
    say(f"transcript: {transcript}")
    say(f"journal:    {store.url}  (tenax show {goal_id})")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    raise typer.Exit(0 if status == "succeeded" else 1)


@app.command("doctor")
def doctor_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="provider:model to check (default: TENAX_MODEL)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="The API base URL to check."),
) -> None:
    """Check a setup with one tiny model call: key, base URL, tool calling, usage reporting, price,
    Docker and the store. Exit 1 when something would stop a goal.

    Example: tenax doctor -m openai-chat:qwen3 --base-url http://localhost:8080/v1
    """
    from tenax.app import doctor

    findings = doctor(model, base_url)
    marks = {"ok": ("ok  ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red")}
    for f in findings:
        say(marks[f.verdict], f"  {f.what:8} ", f.detail)
    raise typer.Exit(1 if any(f.verdict == "fail" for f in findings) else 0)


app.command("submit", help="Queue a goal for the background daemon (tenax goal --bg) and print its id at once.\n\n"
            "Example: tenax submit \"make the tests pass\" -w ~/src/app -c \"pytest -q\" --after 3f2a")(goal_cmd)
from tenax.daemon.commands import register as _register_daemon  # noqa: E402 - after the commands it extends

_register_daemon(app, sys.modules[__name__])


def main() -> None:
    """Run the CLI. Faults outside tenax's own errors still end in one clear line, never a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130)
    except BrokenPipeError:  # `tenax export ID | head`
        sys.stderr.close()
        raise SystemExit(141)
    except SQLAlchemyError as e:  # TODO(store): the store should raise TenaxError for these itself
        from tenax.store.engine import resolve_url, url_for_display

        detail = getattr(e, "orig", None) or e
        say(("error:", "bold red"), f" the database at {url_for_display(resolve_url(None))} failed: {detail}. "
            "If it is damaged, point TENAX_DB at another file (or restore a backup).", err=True)
        raise SystemExit(2)
    except Exception as e:  # noqa: BLE001 - a bug: say where the traceback went, keep the terminal clean
        import traceback

        fd, path = tempfile.mkstemp(prefix="tenax-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        say(("internal error:", "bold red"), f" {type(e).__name__}: {e}. This is a tenax bug; "
            f"the traceback is in {path}", err=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
