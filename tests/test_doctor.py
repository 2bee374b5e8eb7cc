"""`tenax doctor`'s checks through real SDKs over HTTP to the simulator (and to a port where
nothing listens): the key, the base URL, tool calling, usage reporting, the price table."""

from __future__ import annotations

import socket
import time

import pytest

from tenax.app import doctor
from tenax.testing import Compat, Reply, Script, SimError, Simulator, ToolCall

PING = Reply(tool_calls=[ToolCall(name="ping", arguments={"ok": True})])


def verdicts(findings):
    return {f.what: f.verdict for f in findings}


@pytest.mark.docker
def test_a_healthy_setup_is_all_ok(tmp_path):
    with Simulator(Script([PING])) as sim:
        found = doctor("anthropic:claude-sonnet-4-6", sim.url, api_key="k", store_url=f"sqlite:///{tmp_path / 't.db'}")
    v = verdicts(found)
    assert v == {"model": "ok", "call": "ok", "tools": "ok", "usage": "ok", "price": "ok", "sandbox": "ok",
                 "store": "ok"}, found


def test_a_server_that_drops_tools_and_reports_no_usage_is_warned_about(tmp_path):
    quirks = Compat(report_usage=False)
    with Simulator(Script([Reply(text="pong")]), compat=quirks) as sim:
        found = doctor("openai-chat:qwen3", sim.url + "/v1", api_key="k", store_url=f"sqlite:///{tmp_path / 't.db'}")
    v = verdicts(found)
    assert v["call"] == "ok" and v["tools"] == "warn" and v["usage"] == "warn" and v["price"] == "warn"
    assert "dropping tools" in next(f.detail for f in found if f.what == "tools")


def test_a_mistyped_url_fails_within_seconds_and_is_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free again once closed: nothing listens there
    began = time.monotonic()
    found = doctor("anthropic:claude-sonnet-4-6", f"http://127.0.0.1:{port}", api_key="k")
    assert time.monotonic() - began < 15
    endpoint = next(f for f in found if f.what == "endpoint")
    assert endpoint.verdict == "fail" and f"127.0.0.1:{port}" in endpoint.detail


def test_a_refused_key_is_named():
    with Simulator(Script([Reply(error=SimError(status=401, message="invalid x-api-key"))])) as sim:
        found = doctor("anthropic:claude-sonnet-4-6", sim.url, api_key="bad")
    key = next(f for f in found if f.what == "key")
    assert key.verdict == "fail" and "401" in key.detail and "ANTHROPIC_API_KEY" in key.detail


def test_a_bad_model_spec_is_one_finding_not_a_traceback():
    found = doctor("nonsense", None, api_key="k")
    assert [(f.what, f.verdict) for f in found] == [("model", "fail")]


@pytest.mark.docker
def test_a_usd_budget_on_an_unknown_price_is_refused_unless_the_price_is_given(store, workspace):
    from tenax.app import GoalRequest, create_goal, parse_price, run_goal
    from tenax.core.budget import Budgets
    from tenax.core.errors import ConfigError

    script = Script([Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
                     Reply(tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "ok"})])])
    with Simulator(script) as sim:
        req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check="grep -qx fixed status.txt",
                          model="openai-chat:my-local-model", base_url=sim.url + "/v1", budgets=Budgets(max_usd=1.0))
        with pytest.raises(ConfigError, match=r"price of openai-chat:my-local-model is unknown.*--price"):
            create_goal(store, req, api_key="k")
        assert store.list_goals() == []  # nothing was created
        req.price = parse_price("2/8")
        gid = create_goal(store, req, api_key="k")
        assert run_goal(store, gid, api_key="k") == "succeeded"
    goal = store.get_goal(gid)
    expected = (goal.input_tokens * 2 + goal.output_tokens * 8 + goal.cache_read_tokens * 0.2) / 1e6
    assert goal.cost_usd == pytest.approx(expected, rel=0.05) and goal.cost_usd > 0
    with pytest.raises(ConfigError, match="IN/OUT"):
        parse_price("cheap")
