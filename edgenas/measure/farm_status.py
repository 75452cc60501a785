"""Talk to a TVM RPC tracker with deadlines: reach it, read its summary, reserve a server.

Why not ``tvm.rpc.connect_tracker``: its ``TrackerSession`` retries a refused connection for 60 s
and then blocks in ``request`` for as long as no server of the key is free — forever when none
is registered. A build that waits forever cannot fail with one line and be resumed later. This
module speaks the same wire format as ``tvm.rpc.base`` (a magic number, then length-prefixed JSON
messages; see ``tvm/rpc/tracker.py``) on a socket with timeouts. It imports neither tvm nor torch,
so ``edgenas farm status`` and the readiness polls in ``scripts/farm`` answer at once; the tests
run it against the real ``python -m tvm.exec.rpc_tracker``, which keeps the two in step.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass

from ..errors import EdgenasError, UsageError

TRACKER_MAGIC = 0x2F271                       # tvm.rpc.base.RPC_TRACKER_MAGIC
SUCCESS, REQUEST, SUMMARY = 0, 4, 6           # tvm.rpc.base.TrackerCode
START_HINT = "start one with `scripts/farm start 2` or check --tracker"
NOT_A_TRACKER = "is not a TVM tracker (its answer is not the tracker protocol); check --tracker"
_warned_hosts: set[str] = set()


def exposed(host: str) -> bool:
    """Whether ``host`` is neither loopback nor a private-network address: a TVM RPC server there
    runs whatever library it is sent, unauthenticated and unencrypted (docs/security.md)."""
    import ipaddress

    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False  # unresolvable: the connection fails with its own message
    return any(not (ip.is_loopback or ip.is_private) for ip in map(ipaddress.ip_address, addrs))


def warn_if_exposed(host: str, what: str) -> bool:
    """One line on stderr, once per host and process, before a library is sent to ``host``."""
    import sys

    if host in _warned_hosts or not exposed(host):
        return False
    _warned_hosts.add(host)
    print(f"warning: {what} {host} is not on loopback or a private network; TVM's RPC has no authentication "
          f"or encryption, so anyone on the path can read the library and any client can run code on the "
          f"server. Use an isolated lab network or an SSH tunnel (docs/security.md)", file=sys.stderr, flush=True)
    return True


def parse_tracker(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; a malformed address is a usage error."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--tracker must be HOST:PORT (e.g. 127.0.0.1:9190), got {text!r}")
    return host, int(port)


class TrackerClient:
    """One connection to the tracker; every call has a deadline and fails with one line."""

    def __init__(self, tracker: str, timeout_s: float = 10.0):
        self.tracker, self.timeout_s = tracker, timeout_s
        host, port = parse_tracker(tracker)
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout_s)
            self.sock.sendall(struct.pack("<i", TRACKER_MAGIC))
            magic = struct.unpack("<i", self._recv(4))[0]
        except (OSError, EOFError) as e:
            reason = "connection refused" if isinstance(e, ConnectionRefusedError) else (
                f"no answer within {timeout_s:g} s" if isinstance(e, socket.timeout) else str(e) or type(e).__name__)
            raise EdgenasError(f"cannot reach the RPC tracker at {tracker} ({reason}); {START_HINT}") from None
        if magic != TRACKER_MAGIC:
            self.close()
            raise EdgenasError(f"{tracker} answered but is not a TVM RPC tracker; check --tracker")

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("the tracker closed the connection")
            buf += chunk
        return buf

    def _send(self, msg) -> None:
        data = json.dumps(msg).encode()
        self.sock.sendall(struct.pack("<i", len(data)) + data)

    def _reply(self):
        """One length-prefixed JSON message; anything else means the listener is not a tracker
        (an echo or HTTP server answers the magic number by chance at most)."""
        size = struct.unpack("<i", self._recv(4))[0]
        if not 0 < size <= 1 << 24:
            raise EdgenasError(f"{self.tracker} {NOT_A_TRACKER}")
        try:
            reply = json.loads(self._recv(size).decode())
        except (ValueError, UnicodeDecodeError):
            raise EdgenasError(f"{self.tracker} {NOT_A_TRACKER}") from None
        if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], int)):
            raise EdgenasError(f"{self.tracker} {NOT_A_TRACKER}")
        return reply

    def summary(self) -> dict:
        """The tracker's ``{"queue_info": {key: {free, pending}}, "server_info": [...]}``."""
        self.sock.settimeout(self.timeout_s)
        try:
            self._send([SUMMARY])
            code, value = self._reply()
        except (OSError, EOFError) as e:
            raise EdgenasError(f"the RPC tracker at {self.tracker} stopped answering ({e or type(e).__name__})") from None
        if code != SUCCESS:
            raise EdgenasError(f"the RPC tracker at {self.tracker} refused a summary request")
        if not isinstance(value, dict):
            raise EdgenasError(f"{self.tracker} {NOT_A_TRACKER}")
        return value

    def request(self, key: str, wait_s: float, priority: int = 1) -> tuple[str, int, str]:
        """Reserve a free server of ``key``: ``(host, port, matchkey)`` to connect to at once.

        Raises ``TimeoutError`` when no server of the key became free within ``wait_s``; the
        connection is then closed, which withdraws the queued request at the tracker. When no
        server of the key is registered at all it raises at once instead: the tracker drops a
        server as soon as it dies, and waiting ``wait_s`` for each queued request (every tuning
        candidate of a batch asks) would turn "the farm is gone" into minutes of silence. A server
        that registers later is found by the caller's next attempt, or by ``--resume``.
        """
        if _servers_of(self.summary(), key) == 0:
            self.close()
            raise TimeoutError(f"no server is registered for key {key!r}")
        self.sock.settimeout(wait_s)
        try:
            self._send([REQUEST, key, "", priority])
            code, answer = self._reply()
        except socket.timeout:
            self.close()
            raise TimeoutError(f"no server for key {key!r} became free within {wait_s:g} s") from None
        except (OSError, EOFError) as e:
            self.close()
            raise EdgenasError(f"the RPC tracker at {self.tracker} stopped answering ({e or type(e).__name__})") from None
        if code != SUCCESS:
            raise EdgenasError(f"the RPC tracker at {self.tracker} refused a request for key {key!r}")
        try:
            host, port, matchkey = answer
            return str(host), int(port), str(matchkey)
        except (TypeError, ValueError):
            raise EdgenasError(f"{self.tracker} {NOT_A_TRACKER}") from None

    def close(self) -> None:
        if getattr(self, "sock", None) is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "TrackerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class KeyRow:
    key: str
    servers: int     # registered servers of this key
    free: int        # of those, not serving a session now
    busy: int
    pending: int     # requests queued at the tracker, waiting for a free server


@dataclass(frozen=True)
class FarmStatus:
    tracker: str
    keys: tuple[KeyRow, ...]
    servers: tuple[tuple[str, str], ...]      # (address, key)

    def key(self, key: str) -> KeyRow:
        return next((k for k in self.keys if k.key == key), KeyRow(key, 0, 0, 0, 0))


def _servers(raw: dict) -> list[tuple[str, str]]:
    """``(address, key)`` of every server in a tracker summary (its keys read ``server:KEY``)."""
    try:
        return sorted((f"{s['addr'][0]}:{s['addr'][1]}", s["key"].split(":", 1)[1]) for s in raw.get("server_info", []))
    except (KeyError, IndexError, TypeError, AttributeError):
        raise EdgenasError(f"the listener at --tracker {NOT_A_TRACKER}") from None


def _servers_of(raw: dict, key: str) -> int:
    """How many servers of ``key`` a tracker summary lists (free or busy)."""
    return sum(k == key for _, k in _servers(raw))


def farm_status(tracker: str, timeout_s: float = 10.0) -> FarmStatus:
    """Keys, free/busy servers and queue of the farm behind ``tracker``."""
    with TrackerClient(tracker, timeout_s) as client:
        raw = client.summary()
    servers = _servers(raw)
    totals: dict[str, int] = {}
    for _, key in servers:
        totals[key] = totals.get(key, 0) + 1
    queues = raw.get("queue_info", {})
    rows = []
    try:
        for key in sorted(set(totals) | set(queues)):
            total, q = totals.get(key, 0), queues.get(key, {"free": 0, "pending": 0})
            free = min(int(q["free"]), total)
            if total or q["pending"]:
                rows.append(KeyRow(key, total, free, total - free, int(q["pending"])))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise EdgenasError(f"{tracker} {NOT_A_TRACKER}") from None
    return FarmStatus(tracker, tuple(rows), tuple(servers))


def status_rows(status: FarmStatus) -> list[dict]:
    """One dict per key, in display order (for the CLI's table or for JSON output)."""
    return [{"key": k.key, "servers": k.servers, "free": k.free, "busy": k.busy, "queued": k.pending} for k in status.keys]


def wait_for_servers(tracker: str, key: str, count: int, timeout_s: float = 60.0) -> FarmStatus:
    """Poll until ``count`` servers of ``key`` are registered (servers need a few seconds to import
    TVM and register); raise one line when they do not appear in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = farm_status(tracker, timeout_s=2.0)
            if status.key(key).servers >= count:
                return status
            seen = status.key(key).servers
        except EdgenasError:
            seen = 0
        if time.monotonic() > deadline:
            raise EdgenasError(f"only {seen} of {count} servers for key {key!r} registered at {tracker} within {timeout_s:g} s")
        time.sleep(0.3)


if __name__ == "__main__":  # used by scripts/farm: wait until the servers are registered
    import argparse

    ap = argparse.ArgumentParser(description="status of a TVM RPC device farm")
    ap.add_argument("--tracker", required=True)
    ap.add_argument("--wait-key")
    ap.add_argument("--wait-count", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    try:
        st = (wait_for_servers(a.tracker, a.wait_key, a.wait_count, a.timeout) if a.wait_key
              else farm_status(a.tracker, timeout_s=min(a.timeout, 10.0)))
    except EdgenasError as err:
        raise SystemExit(f"error: {err}") from None
    for row in status_rows(st):
        print(" ".join(f"{k}={v}" for k, v in row.items()))
