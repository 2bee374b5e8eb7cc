"""What the guards record is visible: a metric goal's values as a sparkline in `tenax show` and a
chart in the html export, protected-file attempts in `show`, and a goal waiting on a background
job in `tenax ls`. A real SQLite file, the real CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser

from tenax.export.describe import sparkline
from tenax.export.html import to_html
from tenax.store import open_store


def cli(db, *args):
    env = {**os.environ, "TENAX_DB": f"sqlite:///{db}", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tenax.cli", *args], env=env, capture_output=True, text=True, timeout=60)


def make_goal(store, tmp_path):
    gid = store.create_goal(objective="Make the parser faster", model="anthropic:claude-sonnet-4-6",
                            workspace=str(tmp_path), check_cmd="pytest -q",
                            config={"metric": {"command": "python bench.py", "target": "<= 1.5", "unit": " s"}})
    sid = store.create_session(gid, role="main", model="anthropic:claude-sonnet-4-6", system="s", tools=[])
    return gid, sid


def test_metric_values_and_protect_attempts_are_shown(tmp_path):
    db = tmp_path / "t.db"
    store = open_store(f"sqlite:///{db}")
    gid, sid = make_goal(store, tmp_path)
    for value, accepted in ((3.0, True), (2.4, True), (0.02, False), (1.4, True)):
        store.append_step(sid, "event", {"type": "metric", "value": value, "unit": " s", "accepted": accepted})
    store.append_step(sid, "event", {"type": "protect_violation", "path": "tests/test_parser.py", "tool": "bash"})
    show = cli(db, "show", gid)
    assert show.returncode == 0, show.stderr
    line = next(ln for ln in show.stdout.splitlines() if ln.strip().startswith("metric"))
    assert sparkline([3.0, 2.4, 0.02, 1.4]) in line and "last 1.4 s" in line and "<= 1.5" in line
    assert "4 measurement(s)" in line
    assert "1 attempt(s) to change acceptance files: tests/test_parser.py" in show.stdout

    page = to_html(store, gid)
    charts = []

    class Find(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "polyline" and dict(attrs).get("stroke") == "#393":
                charts.append(dict(attrs)["points"])

    Find().feed(page)
    assert len(charts) == 1 and len(charts[0].split()) == 4  # every absolute value, the rejected one too
    assert "1 not accepted by the audit" in page
    store.close()


def test_a_goal_waiting_on_a_job_says_so_in_ls(tmp_path):
    db = tmp_path / "t.db"
    store = open_store(f"sqlite:///{db}")
    gid, sid = make_goal(store, tmp_path)
    store.set_status(gid, "running")
    with store.hold_lease(gid):  # this process drives it
        store.append_step(sid, "event", {"type": "job_wait", "job": "job3", "timeout_s": 600})
        ls = cli(db, "ls")
        assert ls.returncode == 0 and "job job3" in ls.stdout, ls.stdout + ls.stderr
        store.append_step(sid, "event", {"type": "job_done", "job": "job3"})
        assert "job job3" not in cli(db, "ls").stdout
    store.close()
