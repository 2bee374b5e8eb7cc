"""Egress allowlist (``--allow-host HOST[:PORT]``): a goal's sandbox reaches only the listed hosts,
through a filtering HTTP(S) proxy that tenax runs, and every request is logged.

Design
- **Network.** Each goal gets one Docker bridge network, ``tenax-egress-<goal>``, created with
  ``internal: true``: Docker gives it no route out and drops anything forwarded off it. It carries
  the labels ``tenax=1`` and ``tenax.goal=<id>`` and is removed with the goal's containers
  (``cleanup_egress``; ``cleanup_by_label`` calls it). Its bridge interface is named by tenax
  (``tnx<hash>``) so the firewall below can name it. The goal's sandbox (and its sub-agents'
  sandboxes) join it instead of ``none``, with ``HTTP(S)_PROXY``/``http(s)_proxy`` pointing at the
  proxy and ``NO_PROXY`` empty, so pip, npm, curl, git and Python's urllib use it.
- **Proxy on the host.** The proxy is a set of threads in the tenax process that runs the goal,
  listening on the network's gateway address (the host side of the bridge; Docker assigns it to
  internal networks too) at port ``PROXY_PORT``. On the host it ends with the goal's process, its
  log goes straight to the app (a callback; the app journals ``egress`` events), and it reaches
  what the host reaches, which is exactly what it filters. A resumed goal reuses the network (same
  gateway, same port), so a re-attached container's proxy settings stay valid.
- **Host firewall.** Because the gateway address is the host, every host service listening on
  0.0.0.0 would be reachable from the sandbox, around the proxy. tenax inserts INPUT rules for the
  bridge interface (iptables; ip6tables too when present): accept TCP to gateway:PROXY_PORT, reject
  everything else. They carry the comment ``tenax.goal=<id>`` and go with the network. Without root
  or iptables, ``--allow-host`` is refused before anything is created (fail closed).
- **Policy** (``decide``). A request names a host and a port: the CONNECT target for TLS, or the
  absolute ``http://`` URL of a plain request (its Host header is replaced by the URL's host).
  The host must be listed (names compared lower-case, IPs in canonical form; a name is never
  matched against an IP or the reverse, so ``2130706433`` or ``127.1`` is not ``127.0.0.1``), and
  the port must be listed for it (default 80 and 443). A listed name is resolved by the proxy
  itself, and it connects to the very address it checked (no second lookup to rebind): that
  address must be public. A private, loopback or link-local host is reachable only by its IP,
  listed literally and named so in the request. A CONNECT whose TLS ClientHello
  names another server (SNI) than the CONNECT target is refused; a fragmented ClientHello, whose
  name cannot be read, is refused too (for a protocol where the server speaks first, the tunnel
  waits 5 s for the client's first bytes before it opens). Plain HTTP carries one request
  per connection (``Connection: close``; chunked request bodies are refused with 411), so a second,
  pipelined request to another virtual host never reaches the upstream.

Threat model. Defended: a sandboxed process (the model's commands, or code they run) that tries
to reach an unlisted host or port, a listed host by a raw or odd IP form, a listed name that
resolves (or is rebound) to loopback, link-local or private addresses, the host's own services
through the gateway, other containers or networks, or DNS (the internal network has no route to
any resolver; the proxy resolves names). Not defended: what a listed host itself serves or
relays (an allowed package index, a listed CDN that serves other sites behind the same SNI, an
open proxy you listed), data sent to a listed host (exfiltration to an allowed destination),
the contents of TLS (never intercepted), and a compromised tenax process or Docker daemon.
Events still queued in the app when tenax is killed are lost; the requests themselves were
already decided.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from docker.errors import APIError, NotFound

from tenax.core.errors import ConfigError, SandboxError
from tenax.core.ready import readable
from tenax.sandbox._docker import ensure_docker

PROXY_PORT = 3128
DEFAULT_PORTS = frozenset({80, 443})
HEAD_MAX = 16 * 1024  # request line + headers
IDLE_S = 300.0  # a connection idle this long is closed
CONNECT_S = 10.0  # to reach an upstream
MAX_CONNECTIONS = 64
_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")
_DROP_HEADERS = {"host", "connection", "proxy-connection", "proxy-authorization", "keep-alive", "upgrade", "te"}
Allowlist = dict[str, frozenset[int]]  # host (lower-case name or canonical IP) -> ports


# -- the allowlist ---------------------------------------------------------------------------

def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def normalize_host(text: str) -> str | None:
    """A host as the allowlist keys it: a canonical IP, or a lower-case name; None if neither."""
    host = text.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    ip = _ip(host) if ":" in host or host.replace(".", "").isdigit() else None
    if ip is not None:
        return str(ip)
    return host if _NAME.match(host) and not host.replace(".", "").isdigit() else None


def parse_allow_hosts(values: Iterable[str]) -> Allowlist:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` entries -> {host: ports}; without a port, 80 and
    443. Raises ConfigError naming the bad entry."""
    allow: dict[str, set[int]] = {}
    for raw in values:
        entry = str(raw).strip()
        host, port = entry, None
        if "://" in entry or "/" in entry:
            raise ConfigError(f"--allow-host {raw!r}: give a host or host:port, not a URL (e.g. pypi.org or example.com:8443)")
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else (None if not rest else "?")
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        name = normalize_host(host)
        if not name:
            raise ConfigError(f"--allow-host {raw!r}: {host!r} is not a host name or IP address")
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"--allow-host {raw!r}: the port must be a number from 1 to 65535")
        allow.setdefault(name, set()).update({int(port)} if port is not None else DEFAULT_PORTS)
    return {host: frozenset(ports) for host, ports in allow.items()}


def decide(allow: Allowlist, host: str, port: int) -> tuple[str | None, str]:
    """(the address to connect to, "") for an allowed request; (None, why) for a refused one.
    A listed name is resolved here, and only a public address is used (a private, loopback or
    link-local one only when the request names that IP and the IP itself is listed)."""
    name = normalize_host(host)
    if name is None:
        return None, f"{host[:100]!r} is not a valid host"
    if name not in allow:
        return None, f"{name} is not on the allowlist"
    if port not in allow[name]:
        return None, f"port {port} is not allowed for {name} (allowed: {', '.join(map(str, sorted(allow[name])))})"
    if _ip(name) is not None:
        return name, ""
    try:
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return None, f"{name} does not resolve ({exc})"
    addresses = [str(_ip(info[4][0])) for info in found]
    for address in addresses:
        ip = _ip(address)
        if ip.is_global and not ip.is_multicast:
            return address, ""
    return None, (f"{name} resolves to {', '.join(dict.fromkeys(addresses))}: not a public address "
                  f"(list an internal host by its IP, and use that IP)")


# -- the proxy -------------------------------------------------------------------------------

class _Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(request line + headers, what followed them); raises _Refused on a bad or huge head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > HEAD_MAX:
            raise _Refused(431, "request head too large")
        chunk = sock.recv(65536)
        if not chunk:
            raise _Refused(400, "connection closed before a complete request head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _host_port(target: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` of a CONNECT target."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise _Refused(400, f"CONNECT target {target[:100]!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def client_hello_sni(data: bytes) -> str | None:
    """The server name of a TLS ClientHello record (b"" when it has none); None when ``data`` is
    not one complete ClientHello record (fragmented, or not TLS)."""
    if len(data) < 5 or data[0] != 0x16 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
        return None
    body = data[5:5 + int.from_bytes(data[3:5], "big")]
    if len(body) < 4 or body[0] != 0x01 or len(body) < 4 + int.from_bytes(body[1:4], "big"):
        return None
    try:
        at = 4 + 2 + 32
        at += 1 + body[at]  # session id
        at += 2 + int.from_bytes(body[at:at + 2], "big")  # cipher suites
        at += 1 + body[at]  # compression methods
        end = at + 2 + int.from_bytes(body[at:at + 2], "big")
        at += 2
        while at + 4 <= end:
            kind, size = int.from_bytes(body[at:at + 2], "big"), int.from_bytes(body[at + 2:at + 4], "big")
            if kind == 0:  # server_name: list length, name type, name length, name
                return body[at + 9:at + 9 + int.from_bytes(body[at + 7:at + 9], "big")].decode("ascii").lower()
            at += 4 + size
    except (IndexError, UnicodeDecodeError):
        return None
    return ""


def _pipe(routes: dict[socket.socket, socket.socket], idle: float = IDLE_S) -> None:
    """Copy bytes along ``routes`` (source -> destination) until every source ends or all idle."""
    live = set(routes)
    while live:
        ready = readable(live, idle)
        if not ready:
            return
        for src in ready:
            try:
                data = src.recv(65536)
                if data:
                    routes[src].sendall(data)
                    continue
            except OSError:
                return
            live.discard(src)
            try:
                routes[src].shutdown(socket.SHUT_WR)
            except OSError:
                pass


class EgressProxy:
    """A filtering HTTP(S) proxy on ``bind``: CONNECT tunnels and absolute-URI ``http://``
    requests to the hosts of ``allow``. ``on_request(event)`` is called (from the proxy's threads)
    once per request with {type: egress, method, host, port, verdict, reason, address[, path]}."""

    def __init__(self, allow: Allowlist, bind: tuple[str, int], on_request: Callable[[dict], None] | None = None):
        self.allow, self.bind = allow, bind
        self.on_request = on_request or (lambda event: None)
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (``bind`` with the port the system chose for port 0)."""
        return self._server.getsockname()[:2] if self._server else self.bind

    def start(self) -> None:
        try:
            self._server = socket.create_server(self.bind, family=socket.AF_INET6 if ":" in self.bind[0] else socket.AF_INET)
        except OSError as exc:
            raise SandboxError(f"the egress proxy cannot listen on {self.bind[0]}:{self.bind[1]}: {exc}") from exc
        self._server.settimeout(0.5)
        threading.Thread(target=self._accept, name=f"egress-{self.bind[0]}", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            for sock in [*self._open, *([self._server] if self._server else [])]:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._open) >= MAX_CONNECTIONS or self._stopped.is_set():
                    conn.close()
                    continue
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream, tunneled = None, False
        event: dict[str, Any] = {"type": "egress", "method": "", "host": "", "port": 0}
        try:
            client.settimeout(30)
            head, rest = _read_head(client)
            line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                raise _Refused(400, f"bad request line {line[:100]!r}")
            method, target = parts[0].upper(), parts[1]
            event["method"] = method[:20]
            if method == "CONNECT":
                host, port = _host_port(target)
            else:
                url = urlsplit(target)
                if url.scheme.lower() != "http" or not url.hostname:
                    raise _Refused(400, "not a proxy request: send an absolute http:// URL, or CONNECT for https")
                try:
                    host, port = url.hostname, url.port or 80
                except ValueError:
                    raise _Refused(400, f"bad port in {target[:100]!r}") from None
                event["path"] = (url.path or "/")[:200]
            event.update(host=host[:255], port=port)
            address, why = decide(self.allow, host, port)
            if address is None:
                raise _Refused(403, why)
            event["address"] = address
            try:
                upstream = socket.create_connection((address, port), timeout=CONNECT_S)
            except OSError as exc:
                raise _Refused(502, f"could not connect to {address}:{port}: {exc}") from None
            upstream.settimeout(IDLE_S)
            client.settimeout(IDLE_S)
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                tunneled = True
                rest = self._check_sni(client, rest, host)
                self._log(event, "allowed")
                upstream.sendall(rest)
                _pipe({client: upstream, upstream: client})
            else:
                head = self._forward_head(method, url, host, port, header_lines)
                self._send_body(client, upstream, head, rest, header_lines)
                self._log(event, "allowed")
                _pipe({upstream: client})
        except _Refused as refused:
            self._log(event, "refused" if refused.status in (400, 403, 411, 431) else "failed", refused.reason)
            if not tunneled:
                body = f"tenax egress proxy: {refused.reason}\n".encode("utf-8", "replace")
                try:
                    client.sendall(f"HTTP/1.1 {refused.status} {_REASONS[refused.status]}\r\nContent-Type: text/plain\r\n"
                                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                except OSError:
                    pass
        except (OSError, UnicodeError):
            pass
        finally:
            for sock in (upstream, client):
                if sock is not None:
                    sock.close()
            with self._lock:
                self._open.discard(client)

    def _check_sni(self, client: socket.socket, rest: bytes, host: str) -> bytes:
        """The tunnel's first bytes; a TLS ClientHello must name the CONNECT target (or no one)."""
        while not rest or (rest[0] == 0x16 and (len(rest) < 5 or len(rest) < 5 + int.from_bytes(rest[3:5], "big"))):
            if not readable([client], 30 if rest else 5):
                break  # the client waits for the server to speak first: not TLS
            chunk = client.recv(65536)
            if not chunk:
                break
            rest += chunk
        if rest[:1] == b"\x16":
            sni = client_hello_sni(rest)
            if sni is None:
                raise _Refused(403, "the TLS ClientHello is fragmented or malformed; its server name cannot be checked")
            if sni and normalize_host(sni) != normalize_host(host):
                raise _Refused(403, f"the TLS server name {sni[:100]!r} differs from the CONNECT target {host}")
        return rest

    @staticmethod
    def _forward_head(method: str, url: Any, host: str, port: int, header_lines: list[str]) -> bytes:
        kept = [h for h in header_lines if h.partition(":")[0].strip().lower() not in _DROP_HEADERS]
        if any(h.partition(":")[0].strip().lower() == "transfer-encoding" for h in kept):
            raise _Refused(411, "chunked request bodies are not supported through the egress proxy; send Content-Length")
        authority = (f"[{host}]" if ":" in host else host) + ("" if port == 80 else f":{port}")
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}", *kept, "Connection: close", "", ""]
        return "\r\n".join(lines).encode("latin-1")

    @staticmethod
    def _send_body(client: socket.socket, upstream: socket.socket, head: bytes, rest: bytes, header_lines: list[str]) -> None:
        """The head and the request body (Content-Length bytes); nothing after the body (a pipelined
        request) is sent on, or read from the client."""
        length = next((h.partition(":")[2].strip() for h in header_lines if h.partition(":")[0].strip().lower() == "content-length"), "0")
        if not length.isdigit():
            raise _Refused(400, "bad Content-Length")
        upstream.sendall(head + rest[:int(length)])
        left = int(length) - len(rest[:int(length)])
        while left > 0:
            chunk = client.recv(min(left, 65536))
            if not chunk:
                return
            upstream.sendall(chunk)
            left -= len(chunk)

    def _log(self, event: dict[str, Any], verdict: str, reason: str = "") -> None:
        try:
            self.on_request({**event, "verdict": verdict, **({"reason": reason} if reason else {})})
        except Exception:  # noqa: BLE001 - a broken log consumer must not break the proxy
            pass


_REASONS = {400: "Bad Request", 403: "Forbidden", 411: "Length Required", 431: "Request Header Fields Too Large",
            502: "Bad Gateway"}


# -- the network, the host firewall and the gateway ------------------------------------------

def _tag(goal_id: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", goal_id)[:100]


def network_name(goal_id: str) -> str:
    return f"tenax-egress-{_tag(goal_id)}"


def _bridge_name(goal_id: str) -> str:
    return "tnx" + hashlib.sha256(goal_id.encode()).hexdigest()[:12]  # an interface name: at most 15 chars


def firewall_preflight() -> None:
    """Raise ConfigError unless tenax can firewall the host from the sandbox (root and iptables)."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        raise ConfigError(
            "--allow-host needs to firewall the host from the sandbox's network, which takes root and "
            "iptables (tenax runs as uid %d%s). Run tenax as root, or use --network none." % (
                os.geteuid(), "" if shutil.which("iptables") else ", and iptables is not installed"))


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool, "-w", "10", *args], capture_output=True, text=True, timeout=60)


def _unguard(comment: str) -> None:
    """Delete the INPUT rules carrying ``comment``."""
    for tool in filter(shutil.which, ("iptables", "ip6tables")):
        listed = _run(tool, "-S", "INPUT")
        for line in listed.stdout.splitlines():
            words = shlex.split(line)
            if "--comment" not in words or words[:2] != ["-A", "INPUT"]:
                continue
            if words[words.index("--comment") + 1] == comment:
                _run(tool, "-D", *words[1:])


def _guard(bridge: str, gateway: str, comment: str) -> None:
    """Only TCP to the proxy may enter the host from ``bridge``; everything else is rejected."""
    _unguard(comment)
    tag = ["-m", "comment", "--comment", comment]
    steps = [("iptables", ["-I", "INPUT", "1", "-i", bridge, *tag, "-j", "REJECT"]),
             ("iptables", ["-I", "INPUT", "1", "-i", bridge, "-p", "tcp", "-d", gateway, "--dport", str(PROXY_PORT),
                           *tag, "-j", "ACCEPT"]),
             ("ip6tables", ["-I", "INPUT", "1", "-i", bridge, *tag, "-j", "REJECT"])]
    for tool, args in steps:
        if tool == "ip6tables" and not shutil.which(tool):
            continue
        done = _run(tool, *args)
        if done.returncode != 0:
            _unguard(comment)
            raise SandboxError(f"could not firewall the egress network ({tool} {' '.join(args)}): "
                               f"{done.stderr.strip() or done.returncode}")


def cleanup_egress(client=None, goal_id: str | None = None) -> int:
    """Remove the egress networks (all tenax goals', or one goal's) and their firewall rules;
    return how many networks were removed. A network a container still uses is left in place."""
    client = client or ensure_docker()
    labels = ["tenax=1", "tenax.egress=1"] + ([f"tenax.goal={goal_id}"] if goal_id is not None else [])
    removed = 0
    for net in client.networks.list(filters={"label": labels}):
        try:
            net.remove()
            removed += 1
        except NotFound:
            removed += 1
        except APIError:
            continue  # still in use: its rules stay, so the network stays closed
        _unguard(f"tenax.goal={_tag((net.attrs.get('Labels') or {}).get('tenax.goal', ''))}")
    return removed


class EgressGateway:
    """A goal's way out: the internal network, the host firewall for it and the proxy on its
    gateway. ``start()`` creates (or, on resume, reuses) them; sandboxes then join ``network``
    with ``env()``; ``close()`` stops the proxy (the goal pauses: network and rules stay);
    ``remove()`` also removes them (the goal is over; its containers must be gone first)."""

    def __init__(self, goal_id: str, allow_hosts: Iterable[str], *, on_request: Callable[[dict], None] | None = None,
                 client=None):
        self.goal_id = goal_id
        self.allow = parse_allow_hosts(allow_hosts)
        if not self.allow:
            raise ConfigError("the egress allowlist is empty; pass at least one --allow-host")
        self.on_request = on_request
        self.network = network_name(goal_id)
        self.gateway: str | None = None
        self._client = client
        self._proxy: EgressProxy | None = None

    @property
    def client(self):
        if self._client is None:
            self._client = ensure_docker()
        return self._client

    @property
    def proxy_url(self) -> str:
        if self.gateway is None:
            raise SandboxError("the egress gateway is not started: call start() first")
        return f"http://{self.gateway}:{PROXY_PORT}"

    def env(self) -> dict[str, str]:
        """The sandbox's proxy settings (every spelling pip, npm, curl, git and urllib read)."""
        url = self.proxy_url
        return {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
                "NO_PROXY": "", "no_proxy": ""}

    def start(self) -> None:
        firewall_preflight()
        if self._proxy is not None:
            return
        net = self._network()
        config = (net.attrs.get("IPAM") or {}).get("Config") or [{}]
        self.gateway = next((c.get("Gateway") for c in config if c.get("Gateway")), None)
        if not self.gateway:
            raise SandboxError(f"egress network {self.network} has no gateway address; the proxy cannot listen on it")
        self.gateway = self.gateway.split("/")[0]
        _guard(_bridge_name(self.goal_id), self.gateway, f"tenax.goal={_tag(self.goal_id)}")
        self._proxy = EgressProxy(self.allow, (self.gateway, PROXY_PORT), self.on_request)
        self._proxy.start()

    def _network(self):
        labels = {"tenax": "1", "tenax.egress": "1", "tenax.goal": self.goal_id}
        for net in self.client.networks.list(names=[self.network], filters={"label": ["tenax.egress=1"]}):
            if net.name == self.network:
                net.reload()
                if not net.attrs.get("Internal"):
                    raise SandboxError(f"network {self.network} exists but is not internal; remove it "
                                       f"(`tenax sandbox cleanup --goal {self.goal_id}`)")
                return net
        try:
            return self.client.networks.create(
                self.network, driver="bridge", internal=True, labels=labels, check_duplicate=True,
                options={"com.docker.network.bridge.name": _bridge_name(self.goal_id)})
        except APIError as exc:
            raise SandboxError(f"could not create egress network {self.network}: {exc.explanation or exc}") from exc

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None

    def remove(self) -> None:
        self.close()
        cleanup_egress(self.client, self.goal_id)
