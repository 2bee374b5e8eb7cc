"""Metric goals end to end: a real container, the simulator, a real store, a scripted auditor."""

from __future__ import annotations

import json

import pytest
from goalproc import CHECK, KEY
from test_guards import events, main_bodies, router
from test_subagents import _text, call

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.core.errors import ConfigError
from tenax.goal.metric import MetricSpec, parse_value
from tenax.testing import Reply, Script, Simulator

AUDIT = "Audit a measurement"
WARM = "warm cache: bench.sh times a second run after a warm-up, so the cache is hot"


def spec(**kw) -> MetricSpec:
    return MetricSpec.of({"command": "sh bench.sh", "target": "<= 1.5", **kw})


def test_targets_bounds_and_jumps():
    s = spec(bound=0.05)
    assert s.met(1.5) and not s.met(1.6) and s.better(1.0, 2.0)
    assert s.suspicious(0.01, None) == "0.01 is past the physical bound 0.05"
    assert s.suspicious(0.2, 20.0).startswith("it changed 100x") and s.suspicious(4.0, 20.0) is None
    assert spec(target=">= 200").suspicious(2000.5, 100.0) is not None
    assert parse_value("warmup 3 runs\nmean: 1.25 s\n") == 1.25 and parse_value("nothing") is None
    for bad, words in (({"target": "fast"}, "not a comparison"), ({"command": ""}, "needs a command"),
                       ({"jump": 0.5}, "must be > 1"), ({"bound": float("nan")}, "finite")):
        with pytest.raises(ConfigError, match=words):
            MetricSpec.of({"command": "x", "target": "<= 1", **bad})


@pytest.mark.docker
def test_a_100x_jump_is_audited_a_warm_cache_is_rejected_and_an_honest_value_counts(store, workspace):
    (workspace / "status.txt").write_text("fixed\n")
    (workspace / "bench.sh").write_text("echo \"time: $(cat value.txt) s\"\n")
    (workspace / "value.txt").write_text("20\n")
    main = [
        Reply(tool_calls=[call("complete_goal", summary="measured")]),
        Reply(tool_calls=[call("write_file", path="value.txt", content="0.2\n"), call("complete_goal", summary="100x")]),
        Reply(tool_calls=[call("write_file", path="value.txt", content="1.2\n"), call("complete_goal", summary="1.2 s")]),
    ]
    auditor = [Reply(tool_calls=[call("report", outcome="failed", findings=WARM, passed=False)]),
               Reply(tool_calls=[call("read_file", path="bench.sh")]),
               Reply(tool_calls=[call("report", outcome="success", findings="cold runs, real input", passed=True)])]
    with Simulator(router(main, {AUDIT: auditor})) as sim:
        req = GoalRequest(objective="Make the benchmark fast.", workspace=str(workspace), check=CHECK,
                          model="anthropic:claude-sonnet-4-6", base_url=sim.url, budgets=Budgets(max_turns=10),
                          metric={"command": "sh bench.sh", "target": "<= 1.5", "unit": "s"})
        gid = create_goal(store, req, api_key=KEY)
        assert "bench.sh" in store.get_goal(gid).config["protect"]["files"]  # the benchmark cannot be gamed
        assert run_goal(store, gid, api_key=KEY) == "succeeded"
    metrics = events(store, gid, "metric")
    assert [(m["value"], m["accepted"], m["target_met"]) for m in metrics] == [
        (20.0, True, False), (0.2, False, False), (1.2, True, True)]
    audits = events(store, gid, "metric_audit")
    assert [(a["value"], a["passed"], a["previous"]) for a in audits] == [(0.2, False, 20.0), (1.2, True, 20.0)]
    assert "100x" in audits[0]["why"] and WARM in audits[0]["findings"]
    bodies = main_bodies(sim)
    first, rejected = (json.dumps(b["messages"][-1]["content"]) for b in bodies[1:3])
    assert "NOT complete" in first and "20 s (target <= 1.5 s)" in first
    assert "REJECTED" in rejected and WARM in rejected and "NOT complete" in rejected
    audit_reqs = [r.body for r in sim.requests if AUDIT in _text(r.body["messages"][0]["content"])]
    assert {t["name"] for t in audit_reqs[0]["tools"]} == {"read_file", "list_files", "grep", "report"}
    assert "warm cache" in _text(audit_reqs[0]["messages"][0]["content"])


@pytest.mark.docker
def test_a_metric_without_a_check_is_refused(store, workspace):
    with Simulator(Script([])) as sim:
        with pytest.raises(ConfigError, match="--metric needs --check"):
            create_goal(store, GoalRequest(objective="x", workspace=str(workspace), model="anthropic:claude-sonnet-4-6",
                                           base_url=sim.url, metric={"command": "true", "target": "<= 1"}), api_key=KEY)
    assert store.list_goals() == []
