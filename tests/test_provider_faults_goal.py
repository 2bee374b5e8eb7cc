"""The provider fault suite, on whole goals: each retryable fault the simulator can produce is
survived and recorded (journal, usage attempts); a 400 fails the goal within seconds with the
provider's message. Real SDKs over real HTTP (and real TCP misbehaviour), real sandbox, SQLite."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from goalproc import CHECK, KEY

from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.harness.retry import RetryPolicy
from tenax.testing import Reply, Script, SimError, Simulator, ToolCall

pytestmark = pytest.mark.docker
FAST = {"retry": RetryPolicy(max_attempts=4, base_delay=0.05), "timeout": 3}
FIX = [Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
       Reply(tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "fixed"})])]


def start(store, base, workspace, model="anthropic:claude-sonnet-4-6") -> str:
    req = GoalRequest(objective="Make status.txt say fixed.", workspace=str(workspace), check=CHECK, model=model,
                      base_url=base, budgets=Budgets(max_turns=10))
    return create_goal(store, req, api_key=KEY)


def journal(store, gid):
    main = next(s for s in store.sessions_for_goal(gid) if s.role == "main")
    return store.steps(main.id)


FAULTS = {
    "429 with retry-after": Reply(error=SimError(status=429, message="rate limited", retry_after=0.2)),
    "529 overloaded": Reply(error=SimError(status=529, message="Overloaded")),
    "500": Reply(error=SimError(status=500, message="internal error")),
    "read timeout mid-stream": Reply(text="x" * 400, fault="stall", stall_s=6),
    "reset mid-stream": Reply(text="x" * 400, fault="reset"),
    "malformed SSE event": Reply(text="x" * 400, fault="malformed"),
    "empty body": Reply(text="x", fault="empty_body"),
}


@pytest.mark.parametrize("model", ["anthropic:claude-sonnet-4-6", "openai:gpt-5"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_retryable_fault_is_survived_and_recorded(store, workspace, fault, model):
    with Simulator(Script([FAULTS[fault], *FIX])) as sim:
        base = sim.url if model.startswith("anthropic") else sim.url + "/v1"
        gid = start(store, base, workspace, model)
        assert run_goal(store, gid, api_key=KEY, model_options=FAST) == "succeeded"
    retries = [s.payload for s in journal(store, gid) if s.kind == "event" and s.payload["type"] == "provider_retries"]
    assert len(retries) == 1 and len(retries[0]["failed_attempts"]) == 1, retries
    first = store.usage_for_goal(gid)[0]
    assert first.attempts == 2 and not first.attempts_json[0]["ok"] and first.attempts_json[1]["ok"]


def test_a_400_fails_the_goal_within_seconds_with_the_providers_message(store, workspace):
    bad = Reply(error=SimError(status=400, message="messages.0.content: unexpected field 'bogus'"))
    with Simulator(Script([bad])) as sim:
        gid = start(store, sim.url, workspace)
        began = time.monotonic()
        assert run_goal(store, gid, api_key=KEY, model_options=FAST) == "failed"
        assert time.monotonic() - began < 20
        assert len(sim.requests) == 1  # not retried, not waited out
    assert "unexpected field 'bogus'" in store.get_goal(gid).error


class SlowToAccept:
    """A TCP front for the simulator whose first connection attempt cannot even connect: its listen
    backlog is full (a filler connection sits in it), so the SYN goes unanswered and the client's
    connect times out. After that first timeout it drains the filler and proxies every connection."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(3):  # fill the accept queue (the kernel allows backlog + 1)
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(f)
        self.open = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.open.wait()
        for f in self.fillers:
            f.close()
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_a_connect_timeout_is_survived_and_recorded(store, workspace):
    with Simulator(Script(list(FIX))) as sim:
        front = SlowToAccept(int(sim.url.rsplit(":", 1)[1]))
        gid = start(store, f"http://127.0.0.1:{front.port}", workspace)
        threading.Timer(4.0, front.open.set).start()  # after the first connect has timed out (3 s)
        assert run_goal(store, gid, api_key=KEY, model_options=FAST) == "succeeded"
        front.sock.close()
    first = store.usage_for_goal(gid)[0]
    assert first.attempts >= 2 and "connect" in first.attempts_json[0]["error"]
