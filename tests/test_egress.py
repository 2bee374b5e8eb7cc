"""The egress allowlist: a real internal Docker network, the real proxy on its gateway, the real host
firewall, a real sandbox container making requests, and two HTTP servers on this machine (one
allowed, one not). No traffic leaves this machine."""

from __future__ import annotations

import http.server
import ipaddress
import json
import ssl
import subprocess
import threading
import uuid

import docker
import pytest

from tenax.core.errors import ConfigError
from tenax.sandbox import DockerSandbox, EgressGateway, cleanup_by_label, parse_allow_hosts
from tenax.sandbox.egress import PROXY_PORT, client_hello_sni, decide, network_name
from tenax.store import open_store

pytestmark = pytest.mark.docker


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        body = json.dumps({"port": self.server.server_port, "host": self.headers.get("Host"), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    """(allowed port on 127.0.0.1, refused port on 0.0.0.0). The refused one listens on every
    address, so only the host firewall keeps the sandbox from reaching it through the gateway."""
    made = [http.server.ThreadingHTTPServer((addr, 0), _Echo) for addr in ("127.0.0.1", "0.0.0.0")]
    for server in made:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(s.server_port for s in made)
    for server in made:
        server.shutdown()
        server.server_close()


def test_allowlist_entries_are_parsed_or_refused_by_name():
    allow = parse_allow_hosts(["PyPI.org.", "example.com:8443", "127.0.0.1:9", "[::1]:8080", "example.com"])
    assert allow == {"pypi.org": {80, 443}, "example.com": {8443, 80, 443}, "127.0.0.1": {9}, "::1": {8080}}
    for bad, words in [("https://pypi.org", "not a URL"), ("pypi.org:0", "port"), ("pypi.org:http", "port"),
                       ("bad host!", "not a host name"), ("", "not a host name"), ("2130706433", "not a host name")]:
        with pytest.raises(ConfigError, match=words):
            parse_allow_hosts([bad])


def test_decisions_check_names_ports_and_resolved_addresses():
    allow = parse_allow_hosts(["127.0.0.1:5000", "localhost:5000"])
    assert decide(allow, "127.0.0.1", 5000) == ("127.0.0.1", "")
    assert decide(allow, "[::ffff:127.0.0.1]", 5000) == ("127.0.0.1", "")  # the same IP, canonical
    assert "port 5001" in decide(allow, "127.0.0.1", 5001)[1]
    for other in ("127.0.0.2", "2130706433", "127.1", "0x7f.0.0.1", "example.com"):
        assert decide(allow, other, 5000)[0] is None, other
    address, why = decide(allow, "localhost", 5000)  # a listed name resolving to loopback: refused
    assert address is None and "not a public address" in why  # even though 127.0.0.1 is listed


def test_client_hello_server_name_is_read_from_a_real_tls_handshake():
    def hello(name):
        out = ssl.MemoryBIO()
        conn = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname=name)
        with pytest.raises(ssl.SSLWantReadError):
            conn.do_handshake()
        return out.read()

    data = hello("Files.PythonHosted.org")
    assert client_hello_sni(data) == "files.pythonhosted.org"
    assert client_hello_sni(data[:40]) is None  # cut short: cannot be checked
    assert client_hello_sni(hello(None)) == ""  # no server name at all


PROBE = r'''
import json, os, socket, ssl, sys, urllib.error, urllib.request
A, B, GW, BRIDGE_GW = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
proxy = (GW, int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1]))
out = {}

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]

def raw(head, then=b""):
    s = socket.create_connection(proxy, timeout=10)
    s.sendall(head)
    data = s.recv(65536)
    if then and data.startswith(b"HTTP/1.1 200"):
        s.sendall(then)
        data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return data.decode("latin-1")

def direct(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return "connected"
    except OSError as e:
        return type(e).__name__

out["allowed"] = get(f"http://127.0.0.1:{A}/ok?x=1")
out["other_port"] = get(f"http://127.0.0.1:{B}/")
out["other_ip"] = get(f"http://127.0.0.2:{A}/")
out["decimal_ip"] = get(f"http://2130706433:{A}/")
out["dns_trick"] = get(f"http://localhost:{A}/")
out["host_header"] = raw(f"GET http://127.0.0.1:{A}/h HTTP/1.1\r\nHost: other.example\r\n\r\n".encode())
out["other_host"] = raw(b"GET http://other.example/ HTTP/1.1\r\nHost: other.example\r\n\r\n")
out["origin_form"] = raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
out["connect"] = raw(f"CONNECT 127.0.0.1:{A} HTTP/1.1\r\nHost: other.example:443\r\n\r\n".encode(),
                     b"GET /tunnel HTTP/1.0\r\nHost: t\r\n\r\n")
out["connect_other_port"] = raw(f"CONNECT 127.0.0.1:{B} HTTP/1.1\r\n\r\n".encode())
s = socket.create_connection(proxy, timeout=10)
s.sendall(f"CONNECT 127.0.0.1:{A} HTTP/1.1\r\n\r\n".encode())
s.recv(100)
try:
    ssl.create_default_context().wrap_socket(s, server_hostname="other.example")
    out["sni_mismatch"] = "handshake went through"
except (OSError, ssl.SSLError) as e:
    out["sni_mismatch"] = type(e).__name__
out["direct_gateway"] = direct(GW, B)
out["direct_bridge"] = direct(BRIDGE_GW, B)
out["direct_proxy_port_other_ip"] = direct(BRIDGE_GW, proxy[1])
print(json.dumps(out))
'''


def _input_rules(goal_id: str) -> list[str]:
    rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout.splitlines()
    return [r for r in rules if f"tenax.goal={goal_id}" in r]


def test_sandbox_reaches_only_listed_hosts_and_every_request_is_logged(servers, tmp_path):
    allowed, refused = servers
    goal_id = f"egress-{uuid.uuid4().hex[:8]}"
    events: list[dict] = []
    gateway = EgressGateway(goal_id, [f"127.0.0.1:{allowed}", f"localhost:{allowed}"], on_request=events.append)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "probe.py").write_text(PROBE)
    client = docker.from_env()
    bridge = client.networks.get("bridge").attrs["IPAM"]["Config"][0]  # another address of this host
    bridge_gw = bridge.get("Gateway") or str(next(ipaddress.ip_network(bridge["Subnet"]).hosts()))
    try:
        gateway.start()
        assert len(_input_rules(goal_id)) == 2
        sandbox = DockerSandbox(ws, goal_id=goal_id, network=gateway.network, environment=gateway.env())
        sandbox.start()
        env = sandbox.exec("env | grep -i _proxy | sort").stdout
        assert f"HTTPS_PROXY=http://{gateway.gateway}:{PROXY_PORT}" in env and "NO_PROXY=\n" in env + "\n"
        result = sandbox.exec(f"python3 probe.py {allowed} {refused} {gateway.gateway} {bridge_gw}", timeout=90)
        assert result.exit_code == 0, result.stderr
        out = json.loads(result.stdout)
    finally:
        cleanup_by_label(client, goal_id=goal_id)
        gateway.close()

    assert out["allowed"] == [200, {"port": allowed, "host": f"127.0.0.1:{allowed}", "path": "/ok?x=1"}]
    for name in ("other_port", "other_ip", "decimal_ip", "dns_trick"):
        assert out[name][0] == 403 and "tenax egress proxy" in out[name][1], (name, out[name])
    assert f'"host": "127.0.0.1:{allowed}"' in out["host_header"]  # the URL's host, not the Host header
    assert out["other_host"].startswith("HTTP/1.1 403") and "not on the allowlist" in out["other_host"]
    assert out["origin_form"].startswith("HTTP/1.1 400") and "not a proxy request" in out["origin_form"]
    assert f'"port": {allowed}' in out["connect"] and '"path": "/tunnel"' in out["connect"]
    assert out["connect_other_port"].startswith("HTTP/1.1 403")
    assert out["sni_mismatch"] != "handshake went through"
    # around the proxy: the host's services are firewalled off, whatever address they listen on
    assert out["direct_gateway"] == "ConnectionRefusedError"
    assert out["direct_bridge"] in ("ConnectionRefusedError", "OSError", "TimeoutError", "timeout"), out
    assert out["direct_proxy_port_other_ip"] != "connected"

    seen = [(e["method"], e["host"], e["port"], e["verdict"]) for e in events]
    assert seen == [
        ("GET", "127.0.0.1", allowed, "allowed"),
        ("GET", "127.0.0.1", refused, "refused"),
        ("GET", "127.0.0.2", allowed, "refused"),
        ("GET", "2130706433", allowed, "refused"),
        ("GET", "localhost", allowed, "refused"),
        ("GET", "127.0.0.1", allowed, "allowed"),
        ("GET", "other.example", 80, "refused"),
        ("GET", "", 0, "refused"),
        ("CONNECT", "127.0.0.1", allowed, "allowed"),
        ("CONNECT", "127.0.0.1", refused, "refused"),
        ("CONNECT", "127.0.0.1", allowed, "refused"),
    ], seen
    assert "TLS server name 'other.example'" in events[-1]["reason"]
    assert all(e["type"] == "egress" for e in events)
    # the goal's network and its firewall rules went with its containers
    assert not client.networks.list(names=[network_name(goal_id)])
    assert _input_rules(goal_id) == []


def test_goal_with_allow_host_journals_each_request(servers, store, workspace):
    """Through tenax.app.run_goal with the simulator: the agent's command fetches from the allowed
    server and is refused by the other; both requests are egress events in the goal's journal."""
    from goalproc import CHECK, KEY

    from tenax.app import GoalRequest, create_goal, run_goal
    from tenax.core.budget import Budgets
    from tenax.testing import Reply, Script, Simulator, ToolCall

    allowed, refused = servers
    get = "python3 -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())'"
    command = (f"{get} http://127.0.0.1:{allowed}/dep > dep.json; {get} http://127.0.0.1:{refused}/x; "
               "echo fixed > status.txt")
    script = Script([Reply(text="Fetching.", tool_calls=[ToolCall(name="bash", arguments={"command": command})]),
                     Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "ok"})])])
    with Simulator(script) as sim:
        gid = create_goal(store, GoalRequest(
            objective="Fetch the dependency.", workspace=str(workspace), check=CHECK, model="anthropic:claude-sonnet-4-6",
            base_url=sim.url, budgets=Budgets(max_turns=5), allow_hosts=[f"127.0.0.1:{allowed}"]), api_key=KEY)
        status = run_goal(store, gid, api_key=KEY)
    assert status == "succeeded"
    assert json.loads((workspace / "dep.json").read_text())["path"] == "/dep"
    main = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0]
    steps = store.steps(main.id)
    egress = [s for s in steps if s.kind == "event" and s.payload.get("type") == "egress"]
    assert [(e.payload["port"], e.payload["path"], e.payload["verdict"]) for e in egress] == [
        (allowed, "/dep", "allowed"), (refused, "/x", "refused")]
    bash_result = next(s.seq for s in steps if s.kind == "tool_result")
    assert all(e.seq < bash_result for e in egress)  # journaled with the tool call that made them
    assert not docker.from_env().networks.list(names=[network_name(gid)]) and _input_rules(gid) == []


def test_allow_host_is_validated_before_anything_is_created(store, workspace):
    from tenax.app import GoalRequest, create_goal
    from tenax.config import Settings

    def goal(settings=None, **kw):
        req = GoalRequest(objective="x", workspace=str(workspace), check="true", model="anthropic:claude-sonnet-4-6", **kw)
        return create_goal(store, req, settings=settings, api_key="k")

    for network in ("host", "bridge"):
        with pytest.raises(ConfigError, match=f"--network '{network}' cannot be combined with --allow-host"):
            goal(network=network, allow_hosts=["pypi.org"])
    with pytest.raises(ConfigError, match="cannot be combined with TENAX_ALLOW_HOSTS"):
        goal(Settings(allow_hosts="pypi.org,files.pythonhosted.org"), network="bridge")
    with pytest.raises(ConfigError, match="'http://pypi.org'.*not a URL"):
        goal(allow_hosts=["pypi.org", "http://pypi.org"])
    assert store.list_goals() == []
    gid = goal(Settings(allow_hosts="pypi.org, example.com:8443"))
    assert store.get_goal(gid).config["allow_hosts"] == ["pypi.org", "example.com:8443"]


def test_a_resumed_goal_gets_the_same_proxy_address_back(servers):
    """A paused goal keeps its network (its stopped container is attached to it); the next run's
    proxy listens on the same gateway and port, so the container's proxy settings stay valid."""
    import socket

    allowed, _ = servers
    goal_id = f"egress-{uuid.uuid4().hex[:8]}"
    first = EgressGateway(goal_id, [f"127.0.0.1:{allowed}"])
    try:
        first.start()
        url = first.proxy_url
        first.close()
        with pytest.raises(OSError):
            socket.create_connection((first.gateway, PROXY_PORT), timeout=2)
        again = EgressGateway(goal_id, [f"127.0.0.1:{allowed}"])
        again.start()
        assert again.proxy_url == url and len(_input_rules(goal_id)) == 2  # rules are not doubled
        with socket.create_connection((again.gateway, PROXY_PORT), timeout=5) as s:
            s.sendall(f"GET http://127.0.0.1:{allowed}/again HTTP/1.1\r\n\r\n".encode())
            assert b'"path": "/again"' in s.makefile("rb").read()
        again.remove()
    finally:
        first.remove()
    assert _input_rules(goal_id) == []


def test_plain_http_carries_one_request_with_the_urls_host():
    """A request body is passed on by its Content-Length; a pipelined second request (to another
    virtual host) never reaches the upstream, and proxy credentials are not passed on."""
    import socket

    from tenax.sandbox.egress import EgressProxy

    upstream = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def serve():
        conn, _ = upstream.accept()
        conn.settimeout(1.0)
        try:
            while chunk := conn.recv(65536):
                got.extend(chunk)
        except TimeoutError:
            pass
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    port = upstream.getsockname()[1]
    events: list[dict] = []
    proxy = EgressProxy(parse_allow_hosts([f"127.0.0.1:{port}"]), ("127.0.0.1", 0), events.append)
    proxy.start()
    try:
        with socket.create_connection(proxy.address, timeout=10) as s:
            s.sendall(f"POST http://127.0.0.1:{port}/one HTTP/1.1\r\nHost: other.example\r\nProxy-Authorization: Basic eA==\r\n"
                      f"Content-Length: 5\r\n\r\nhello"
                      f"GET /two HTTP/1.1\r\nHost: other.example\r\n\r\n".encode())
            reply = s.makefile("rb").read()
    finally:
        proxy.stop()
        upstream.close()
    assert reply.endswith(b"\r\n\r\nok")
    sent = got.decode()
    assert sent.startswith("POST /one HTTP/1.1\r\n") and f"Host: 127.0.0.1:{port}\r\n" in sent
    assert sent.endswith("\r\n\r\nhello") and "/two" not in sent and "other.example" not in sent
    assert "Proxy-Authorization" not in sent and "Connection: close" in sent
    assert [(e["method"], e["path"], e["verdict"]) for e in events] == [("POST", "/one", "allowed")]


def test_cli_passes_allow_host_and_refuses_a_conflict_in_one_line(tmp_path):
    from test_cli import tenax

    db = tmp_path / "v.db"
    r = tenax("goal", "x", "--workspace", str(tmp_path), "--allow-host", "pypi.org", "--allow-host", "example.com:8443",
              "--network", "bridge", env={"TENAX_DB": f"sqlite:///{db}", "ANTHROPIC_API_KEY": "k"})
    assert r.returncode == 2 and "--network 'bridge' cannot be combined with --allow-host" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    with open_store(f"sqlite:///{db}") as s:
        assert s.list_goals() == []
