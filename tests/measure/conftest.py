"""Fixtures for the measure tests: a loopback device farm started with the real ``scripts/farm``
(TVM's tracker and servers on 127.0.0.1, free ports, always stopped), and tiny compiled libraries
built directly with TVM so these tests do not depend on the compile stage."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FARM = REPO / "scripts" / "farm"
KEY = "edgenas-test"


def _free_port() -> int:
    for _ in range(200):
        port = random.randint(20000, 60000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def _is_ours(pid: int) -> bool:
    try:
        return "tvm.exec.rpc_" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


class LoopbackFarm:
    """A running ``scripts/farm`` (its state file lists the pids) with helpers to break it.
    ``arch="aarch64"``: its servers are aarch64 TVM servers under qemu-user (an emulated rpi4)."""

    def __init__(self, directory: Path, port: int, key: str = KEY, arch: str | None = None):
        self.dir, self.port, self.arch = directory, port, arch
        self.tracker, self.key = f"127.0.0.1:{port}", key
        self.env = {**os.environ, "EDGENAS_FARM_DIR": str(directory)}

    def _arch_args(self, arch: str | None = None) -> list[str]:
        arch = arch or self.arch
        return ["--arch", arch] if arch else []

    def start(self, n: int) -> None:
        self.script("start", str(n), "--port", str(self.port), "--key", self.key, *self._arch_args(), timeout=600)

    def add(self, n: int, key: str, arch: str | None = None) -> None:
        """``n`` more servers of ``key`` (another key and arch make a mixed farm: x86 and rpi4)."""
        self.script("add", str(n), "--key", key, *self._arch_args(arch), timeout=600)

    def script(self, *args: str, timeout: float = 300) -> str:
        r = subprocess.run([str(FARM), *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/farm {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def _state(self) -> list[list[str]]:
        p = self.dir / "state"
        return [ln.split() for ln in p.read_text().splitlines()] if p.exists() else []

    def server_pids(self) -> list[int]:
        return [int(f[1]) for f in self._state() if f[0] == "server" and f[2] == self.key and _is_ours(int(f[1]))]

    def busy_server(self, timeout_s: float = 60.0) -> int:
        """The pid of the server that is serving a session (it has forked a session child)."""
        import psutil

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for pid in self.server_pids():
                if len(psutil.Process(pid).children(recursive=True)) >= 2:
                    return pid
            time.sleep(0.05)
        raise AssertionError("no server started a session")

    def sessions_served(self) -> int:
        """Sessions the servers have finished so far, from their own logs ("finish serving")."""
        return sum(p.read_text(errors="replace").count("finish serving") for p in self.dir.glob("server-*.log"))

    def kill(self, pid: int) -> None:
        """SIGKILL one server's process group and wait until the tracker has dropped it."""
        from edgenas.measure.farm_status import farm_status

        before = farm_status(self.tracker).key(self.key).servers
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while farm_status(self.tracker).key(self.key).servers >= before and time.monotonic() < deadline:
            time.sleep(0.1)

    def ensure(self, n: int, idle_timeout_s: float = 60.0) -> None:
        """At least ``n`` servers, all registered and free.

        Waiting for idle matters: a server that has just finished an earlier test's session
        re-registers with the tracker a moment later, so a test that starts at once would see it
        busy (CI saw ``free == 1`` of 2 right after the build-farm tests)."""
        from edgenas.measure.farm_status import farm_status

        have = len(self.server_pids())
        if have < n:
            self.add(n - have, self.key)
        want = len(self.server_pids())
        deadline = time.monotonic() + idle_timeout_s
        while time.monotonic() < deadline:
            row = farm_status(self.tracker).key(self.key)
            if row.servers >= want and row.free == row.servers and row.pending == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"farm not idle after {idle_timeout_s:g} s: {farm_status(self.tracker).key(self.key)}")

    def stop(self) -> None:
        try:
            self.script("stop", timeout=60)
        finally:  # whatever happened, no process of ours outlives the session
            for fields in self._state():
                pid = int(fields[1])
                if _is_ours(pid):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def loopback_farm(tmp_path_factory) -> LoopbackFarm:
    farm = LoopbackFarm(tmp_path_factory.mktemp("farm"), _free_port())
    try:
        farm.start(2)
        yield farm
    finally:
        farm.stop()


@pytest.fixture(scope="session")
def emulated_farm(tmp_path_factory) -> LoopbackFarm:
    """A loopback farm of one emulated Raspberry Pi 4: an aarch64 TVM RPC server under qemu-user,
    key ``rpi4`` (``scripts/farm start 1 --arch aarch64``; its Python from scripts/setup_cross)."""
    from edgenas.errors import UsageError
    from edgenas.measure.aarch64_check import emulated_server_command

    try:
        emulated_server_command()
    except UsageError as e:
        pytest.skip(str(e))
    farm = LoopbackFarm(tmp_path_factory.mktemp("farm-a64"), _free_port(), key="rpi4", arch="aarch64")
    try:
        farm.start(1)
        yield farm
    finally:
        farm.stop()


def tiny_int8_module():
    """A tiny real INT8 network: quantize -> int8 conv (int32 accumulate) -> rescale -> relu."""
    from tvm import relax

    rng = np.random.default_rng(0)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 8), "float32"))
    w = relax.const(rng.integers(-127, 128, (8, 8, 3, 3)).astype("int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            q = relax.op.clip(relax.op.round(relax.op.divide(x, relax.const(0.05, "float32"))), -128, 127)
            y = bb.emit(relax.op.nn.conv2d(bb.emit(relax.op.astype(q, "int8")), w, padding=1, out_dtype="int32"))
            out = bb.emit_output(relax.op.nn.relu(relax.op.multiply(relax.op.astype(y, "float32"), relax.const(5e-4, "float32"))))
        bb.emit_func_output(out)
    return bb.get()


def build_tiny_int8(path: Path, target_dict: dict | None = None, cross_compiler: str | None = None) -> Path:
    """``tiny_int8_module`` compiled with plain ``tvm.compile`` (no edgenas compile stage)."""
    import tvm

    tgt = tvm.target.Target(target_dict or {"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
    ex = tvm.compile(tiny_int8_module(), target=tgt)
    if cross_compiler:
        from tvm.support import cc

        ex.export_library(str(path), fcompile=cc.cross_compiler(cross_compiler))
    else:
        ex.export_library(str(path))
    return path


TINY_SHAPE = (1, 8, 8, 8)


def tiny_reference(x: np.ndarray) -> np.ndarray:
    """``build_tiny_int8``'s network in numpy (integer conv, exact up to float rounding)."""
    w = np.random.default_rng(0).integers(-127, 128, (8, 8, 3, 3)).astype(np.int64)
    q = np.clip(np.round(x / np.float32(0.05)), -128, 127).astype(np.int64)
    pad = np.pad(q, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, _, h, wd = x.shape
    y = np.zeros((n, 8, h, wd), np.int64)
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", pad[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return np.maximum(y.astype(np.float32) * np.float32(5e-4), 0)


@pytest.fixture(scope="session")
def tiny_lib(tmp_path_factory) -> Path:
    return build_tiny_int8(tmp_path_factory.mktemp("libs") / "tiny_int8.so")
