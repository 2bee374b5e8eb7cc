"""Every command and subcommand, found from the typer app, run as a real process with hostile
arguments: never a traceback, and a non-zero exit for input that cannot be served."""

from __future__ import annotations

import os
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_cli import tenax
from typer.main import get_command

from tenax.app import GoalRequest, create_goal
from tenax.cli import app
from tenax.store import open_store

pytestmark = pytest.mark.docker

UNWRITABLE = "/proc/tenax-unwritable/x.md"
HOSTILE = {
    int: ["-1", "99999999999999999999999"],
    float: ["nan", "1e999"],
    str: ["", "[/x]"],
    Path: ["", UNWRITABLE],
}
ARGUMENT_VALUES = ["", "[/x]", "ffffffffffff"]
# (command, option, value) that are valid requests, so they may succeed
VALID = {("show", "--events", "0")}


def commands(group=None, path=()):
    group = group or get_command(app)
    for name, cmd in group.commands.items():
        if getattr(cmd, "commands", None):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _type(param) -> type:
    t = param.type_descriptor.annotation
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


@pytest.fixture
def goals(tmp_path: Path, workspace: Path) -> dict:
    """A real SQLite file with a succeeded goal and a stopped one."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    store = open_store(url)
    ids = {}
    for final in ("succeeded", "stopped"):
        gid = create_goal(store, GoalRequest(objective="o", workspace=str(workspace), model="anthropic:m"), api_key="k")
        store.set_status(gid, "running")
        store.set_status(gid, final)
        ids[final] = gid
    store.close()
    return {"url": url, **ids}


def _baseline(path: tuple[str, ...], gid: str, workspace: Path) -> list[str]:
    return {
        ("goal",): ["x", "--workspace", str(workspace)],
        ("resume",): [gid], ("show",): [gid], ("export",): [gid], ("steer",): [gid, "hi"],
        ("sandbox", "cleanup"): ["--goal", "ffffffffffff"],  # never without --goal: it would remove every container
    }.get(path, [])


def _cases(gid: str, workspace: Path, garbage_db: str):
    for path, cmd in commands():
        base = _baseline(path, gid, workspace)
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        for i, _ in enumerate(args):
            for v in ARGUMENT_VALUES:
                yield path, [*base[:i], v, *base[i + 1:len(args)], *base[len(args):]], {}, True
        for p in cmd.params:
            if p.param_type_name == "option" and not p.is_flag:
                for v in HOSTILE[_type(p)]:
                    yield path, [*base, p.opts[0], v], {}, (path[-1], p.opts[0], v) not in VALID
        yield path, [*base, "--no-such-option", "[/x]"], {}, True
        # a database file full of garbage; the sandbox and config commands do not touch the database
        yield path, base, {"TENAX_DB": garbage_db}, path[0] not in ("sandbox", "config")


@pytest.mark.timeout(1800)  # ~90 processes; `goal` alone imports every provider SDK (~5 s of CPU each)
def test_no_command_prints_a_traceback(tmp_path, workspace, goals):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(64 * 1024))
    cases = list(_cases(goals["succeeded"], workspace, f"sqlite:///{garbage}"))
    assert {c[0] for c in cases} >= {("goal",), ("resume",), ("ls",), ("show",), ("steer",), ("export",), ("demo",),
                                     ("sandbox", "build"), ("sandbox", "cleanup")}

    def run(case):
        path, args, env, must_fail = case
        return case, tenax(*path, *args, env={"TENAX_DB": goals["url"], **env}, timeout=120)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run, cases))
    bad = []
    for (path, args, env, must_fail), r in results:
        out = r.stdout + r.stderr
        if "Traceback" in out or "internal error" in out or (must_fail and r.returncode == 0):
            bad.append(f"tenax {' '.join(path)} {args!r} {env} -> exit {r.returncode}\n{out[-1500:]}")
    assert not bad, "\n\n".join(bad)


def test_steer_refuses_a_final_goal_and_says_when_a_resumable_one_sees_it(goals):
    env = {"TENAX_DB": goals["url"]}
    r = tenax("steer", goals["succeeded"], "also do X", env=env)
    assert r.returncode == 2 and "succeeded, a final status" in r.stderr, r.stderr
    r = tenax("steer", goals["stopped"], "also do X", env=env)
    assert r.returncode == 0 and f"when it resumes (tenax resume {goals['stopped']})" in r.stdout, r.stdout + r.stderr


def test_edges_have_clear_messages(goals, tmp_path):
    env = {"TENAX_DB": goals["url"]}
    r = tenax("ls", "--limit", "-1", env=env)
    assert r.returncode == 2 and "--limit must be a positive whole number" in r.stderr and "no goals" not in r.stdout
    r = tenax("export", goals["succeeded"], "-o", UNWRITABLE, env=env)
    assert r.returncode == 2 and f"cannot write the export to {UNWRITABLE!r}" in r.stderr, r.stderr
    r = tenax("export", goals["succeeded"], "-o", str(tmp_path / "ok.md"), env=env)
    assert r.returncode == 0 and (tmp_path / "ok.md").read_text().startswith(f"# tenax goal {goals['succeeded']}")
    r = tenax("sandbox", "cleanup", "--goal", "", env=env)
    assert r.returncode == 2 and "is not a goal id" in r.stderr, r.stderr
