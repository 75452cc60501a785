"""The device farm: TVM's own RPC tracker and servers, used with deadlines and fail-over.

A ``Farm`` measures and runs compiled libraries on servers registered under one key, and hands
MetaSchedule an ``RPCRunner`` to tune through the same servers (docs/tvm.md §4). Every request

* reserves a server at the tracker, waiting at most ``timeout_s`` for one to be free (and not at
  all when none of the key is registered: the tracker drops a server whose process dies at once);
* opens a session with ``session_timeout = timeout_s`` (the server kills a hung session) and a
  client-side watchdog (a vanished host never answers at all);
* uploads, loads, runs, and **releases the session at once**: a TVM RPC server has one slot, and
  a session left open blocks tuning and every other client until it times out;
* on a lost server (killed, crashed, timed out) retries on another server of the same key, up to
  ``retries`` attempts; an error in the library itself fails at once, since retrying cannot help.

When no server answers, one line says so (``EdgenasError``); the build keeps its run state, so
``--resume`` completes the run once a server is back.
"""

from __future__ import annotations

import gc
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import EdgenasError
from .farm_status import START_HINT, FarmStatus, TrackerClient, farm_status, parse_tracker, warn_if_exposed
from .context import WindowWatch
from .cores import core_lock, local_server
from .protocol import (Measurement, Protocol, append_journal, configure_threads, input_tensor, make_measurement,
                       reference_ratio, time_interleaved, time_vm)
from .stats import LatencyStats

# Substrings of errors that mean "the server or the link went away", not "the library is bad".
_LOST = ("kShutdown", "RPCSessionTimeoutError", "Socket", "socket", "connect", "Connection", "closed",
         "Broken pipe", "reset", "refused", "timed out", "EOF")


@dataclass(frozen=True)
class Attempt:
    server: str        # "host:port", or "" when no server was reserved
    outcome: str       # "ok", "lost: ...", or why no server was reserved


class _Lost(Exception):
    """The server or the connection was lost: retry elsewhere."""


def _is_lost(err: BaseException) -> bool:
    return isinstance(err, (OSError, TimeoutError, EOFError)) or any(s in str(err) for s in _LOST)


def _raised_by_tvm(err: BaseException) -> bool:
    """Whether ``err`` came out of TVM (the session, the server, the library) rather than from this
    client's own Python code: by its type (``tvm.error.RPCError`` and the other TVM/FFI errors, which
    the FFI raises from compiled code with no Python frame of TVM's own) or else by the innermost
    frame of its traceback."""
    if type(err).__module__.split(".")[0] in ("tvm", "tvm_ffi"):
        return True
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is None or f"{os.sep}tvm" in tb.tb_frame.f_code.co_filename


def emulation(sess) -> str:
    """How the session's server is emulated, or "" for a real device. The loopback farm's aarch64
    servers (qemu-user) define the global function ``edgenas.emulated`` (docs/farm.md); a board
    running TVM's plain ``rpc_server`` does not, and the lookup fails."""
    try:
        return str(sess.get_function("edgenas.emulated")())
    except AttributeError:
        return ""


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    tail = [ln for ln in lines if "Error" in ln or "Check failed" in ln]
    return (tail[-1] if tail else lines[-1] if lines else type(err).__name__)[:240]


class Farm:
    """The servers of one key at one tracker, measured for one target: ``target`` is required
    because every ``Measurement`` (and every journal line) records which target it was taken for."""

    def __init__(self, tracker: str, key: str, *, target: str, timeout_s: float = 30.0, retries: int = 3,
                 protocol: Protocol | None = None, priority: int = 1):
        host, _ = parse_tracker(tracker)
        warn_if_exposed(host, "the RPC tracker")
        self.tracker, self.key, self.timeout_s, self.retries = tracker, key, float(timeout_s), max(1, int(retries))
        self.protocol, self.target, self.priority = protocol or Protocol(), target, priority
        self.attempts: list[Attempt] = []     # every attempt of this Farm, for status lines and tests

    # -- queries ------------------------------------------------------------------------------
    def status(self) -> FarmStatus:
        return farm_status(self.tracker, timeout_s=min(self.timeout_s, 10.0))

    def has_servers(self) -> bool:
        """Whether the tracker answers and lists a server (free or busy) for the key."""
        try:
            return self.status().key(self.key).servers > 0
        except EdgenasError:
            return False

    def check(self) -> FarmStatus:
        """Fail before long work when the tracker is unreachable or has no server for the key."""
        st = self.status()
        if st.key(self.key).servers == 0:
            keys = ", ".join(k.key for k in st.keys) or "none"
            raise EdgenasError(f"no server is registered for key {self.key!r} at {self.tracker} (keys: {keys}); "
                               f"start one or check `edgenas farm status --tracker {self.tracker}`")
        return st

    # -- the session engine -------------------------------------------------------------------
    def _attempt(self, fn: Callable, avoid: set[str]):
        from tvm import rpc

        with TrackerClient(self.tracker, timeout_s=min(self.timeout_s, 10.0)) as tracker:
            host, port, matchkey = tracker.request(self.key, self.timeout_s, self.priority)
            if f"{host}:{port}" in avoid:  # hold that reservation and ask once more for another server,
                try:                       # briefly: the held one stays valid for ~6 s only
                    host, port, matchkey = tracker.request(self.key, min(self.timeout_s, 4.0), self.priority)
                except TimeoutError:
                    pass
        server = f"{host}:{port}"
        warn_if_exposed(host, "the RPC server")
        box: dict = {}

        def work():
            sess = None
            try:
                sess = rpc.connect(host, port, matchkey, session_timeout=self.timeout_s)
                box["value"] = fn(sess, server)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                box["local"] = not _raised_by_tvm(e)
                box["error"] = e.with_traceback(None)  # its frames would keep the session open
            finally:
                del sess
                gc.collect()  # drop remote handles now: this closes the session and frees the slot

        t = threading.Thread(target=work, name=f"edgenas-rpc-{server}", daemon=True)
        t.start()
        t.join(self.timeout_s + 10.0)
        if t.is_alive():
            raise _Lost(server, f"no answer within {self.timeout_s + 10:g} s")
        if "error" in box:
            err = box["error"]
            if _is_lost(err):
                raise _Lost(server, _first_line(err))
            if box["local"]:  # this client's own code failed (statistics, shapes): not the server's fault
                raise err
            raise EdgenasError(f"{server} (key {self.key!r}): {_first_line(err)}")
        return box["value"], server

    def _with_session(self, fn: Callable, what: str):
        """``fn(session, server)`` on some server of the key, with fail-over: ``(value, server)``."""
        failed: set[str] = set()
        last = ""
        for _ in range(self.retries):
            try:
                value, server = self._attempt(fn, failed)
            except TimeoutError as busy:   # none free within the deadline, or none registered at all
                last = str(busy)
                self.attempts.append(Attempt("", last))
                continue
            except _Lost as lost:
                server, reason = lost.args
                failed.add(server)
                self.attempts.append(Attempt(server, f"lost: {reason}"))
                last = f"{server} lost: {reason}"
                continue
            self.attempts.append(Attempt(server, "ok"))
            return value, server
        registered = self._registered()
        raise EdgenasError(
            f"no server for key {self.key!r} at {self.tracker} answered within {self.timeout_s:g} s while {what} "
            f"(tried {self.retries} times; last: {last}; {registered} registered now); start one or check "
            f"`edgenas farm status --tracker {self.tracker}`")

    def _registered(self) -> str:
        try:
            return str(self.status().key(self.key).servers)
        except EdgenasError:
            return "tracker unreachable"

    # -- measurement --------------------------------------------------------------------------
    def measurement(self, lib_path, input_shape, repeat: int | None = None, protocol: Protocol | None = None, *,
                    journal: str | os.PathLike | None = None, reference=None, reference_shape=None) -> Measurement:
        """Measure ``lib_path`` on a server with the protocol; ``repeat`` = minimum samples;
        interleaved with the library ``reference`` when one is given. The measurement is appended to
        ``journal`` when one is given.

        A server on this host (loopback) is measured holding the locks of its physical cores, with
        as many pool threads as it owns cores, and its windows are watched for run-queue wait and
        steal (docs/measurement.md); a remote server's cores cannot be seen, so neither applies."""
        lib_path, proto = self._check_lib(lib_path), protocol or self.protocol
        ref_path = self._check_lib(reference) if reference is not None else None

        def fn(sess, server):
            import contextlib
            from dataclasses import replace

            from tvm import relax

            host, port = server.rsplit(":", 1)
            here = local_server(host, int(port))
            p = replace(proto, threads=len(here.cores.cores)) if here and not proto.threads else proto
            dev = sess.cpu()

            def load(path):
                remote_name = f"{uuid.uuid4().hex[:8]}_{path.name}"   # dlopen caches by path
                sess.upload(str(path), remote_name)
                return relax.VirtualMachine(sess.load_module(remote_name), dev)

            vm, ref_vm = load(lib_path), load(ref_path) if ref_path is not None else None
            threads, pinning = configure_threads(sess.get_function, p)
            x = input_tensor(input_shape, dev)
            with core_lock(here.cores) if here else contextlib.nullcontext():
                if ref_vm is None:
                    return time_vm(vm, dev, x, p, repeat), None, threads, pinning, here, emulation(sess)
                import psutil

                pids = (here.pid, *(c.pid for c in psutil.Process(here.pid).children(recursive=True))) if here else ()
                out, windows = time_interleaved(vm, ref_vm, dev, x, input_tensor(reference_shape or input_shape, dev),
                                                p, lambda: WindowWatch(here.cores.cpus if here else None, pids))
            return out, reference_ratio(ref_path, windows, p), threads, pinning, here, emulation(sess)

        (out, ratio, threads, pinning, here, emulated), server = self._with_session(fn, f"measuring {lib_path.name}")
        device = f"rpc key {self.key}" + (f", emulated ({emulated})" if emulated else "")
        m = make_measurement(out, proto=proto, target=self.target, key=self.key, tracker=self.tracker,
                             device_id=server, device=device, threads=threads, pinning=pinning,
                             library=lib_path, input_shape=input_shape, emulated=bool(emulated),
                             cores=here.cores if here else None, reference=ratio)
        if journal is not None:
            append_journal(journal, m)
        return m

    def measure(self, lib_path, input_shape, repeat: int = 30, *, journal: str | os.PathLike | None = None) -> LatencyStats:
        """The latency distribution of ``lib_path`` (``measurement(...).stats``)."""
        return self.measurement(lib_path, input_shape, repeat, journal=journal).stats

    def run(self, lib_path, x: np.ndarray) -> np.ndarray:
        """Outputs of ``lib_path`` on the device for a batch ``x``, one sample at a time (libraries
        are compiled for batch 1), for numeric verification against onnxruntime."""
        lib_path = self._check_lib(lib_path)
        x = np.ascontiguousarray(x, dtype=np.float32)

        def fn(sess, server):
            import tvm
            from tvm import relax

            remote_name = f"{uuid.uuid4().hex[:8]}_{lib_path.name}"
            sess.upload(str(lib_path), remote_name)
            dev = sess.cpu()
            vm = relax.VirtualMachine(sess.load_module(remote_name), dev)
            return np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1], dev)).numpy() for i in range(len(x))])

        return self._with_session(fn, f"running {lib_path.name}")[0]

    @staticmethod
    def _check_lib(lib_path) -> Path:
        p = Path(lib_path)
        if not p.is_file():
            raise EdgenasError(f"{p}: no such library")
        return p

    # -- tuning -------------------------------------------------------------------------------
    def ms_runner(self, evaluator_config=None, max_workers: int | None = None):
        """A MetaSchedule ``RPCRunner`` on this farm's key. Sessions are created with the same
        deadlines (``create_ms_session``), so a candidate fails instead of waiting forever when
        no server answers; one worker per registered server by default."""
        from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RPCConfig, RPCRunner

        from ..compile.tune import EVALUATOR  # the farm's boards are CPUs (CUDA is not tuned through one)

        host, port = parse_tracker(self.tracker)
        workers = max_workers or max(1, self.check().key(self.key).servers)
        return RPCRunner(
            rpc_config=RPCConfig(tracker_host=host, tracker_port=port, tracker_key=self.key,
                                 session_priority=self.priority, session_timeout_sec=int(self.timeout_s)),
            evaluator_config=evaluator_config or EvaluatorConfig(**EVALUATOR),
            f_create_session=create_ms_session, max_workers=workers, initializer=_runner_worker_init)


def create_ms_session(rpc_config):
    """``f_create_session`` for MetaSchedule's RPCRunner: reserve a server with a deadline (TVM's
    default waits forever when every server of the key is gone)."""
    from tvm import rpc

    tracker = f"{rpc_config.tracker_host}:{rpc_config.tracker_port}"
    wait = float(rpc_config.session_timeout_sec)
    with TrackerClient(tracker, timeout_s=min(wait, 10.0)) as client:
        try:
            host, port, matchkey = client.request(rpc_config.tracker_key, wait, rpc_config.session_priority)
        except TimeoutError as e:
            raise RuntimeError(f"{e}; {START_HINT}") from None
    return rpc.connect(host, port, matchkey, session_timeout=rpc_config.session_timeout_sec)


def _runner_worker_init() -> None:
    """The runner's worker imports MetaSchedule, whose TVMScript parser is slow to import without
    the memoised ``inspect.getmodule`` (docs/tvm.md §5)."""
    from ..compile import fastinspect

    fastinspect.install(warm=False)
