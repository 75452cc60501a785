"""Where training runs: the device, and this process's place in a torch.distributed group.

``Compute`` is resolved once (``resolve_compute`` from ``--train-device``/``--nproc``, or from
``torchrun``'s environment) and passed down to every training loop; export, compile and
measurement never see it (they work on CPU copies). docs/distributed.md describes the scheme:

* rank 0 runs the build; the other ranks only *serve*: each training job (one ``fit``, one
  supernet search) is broadcast to them as ``(function, arguments)`` and every rank runs it on its
  shard of each batch. The batch order comes from the same seeded generator on every rank, so
  rank ``r`` of ``N`` takes samples ``r, r+N, ...`` of each batch of the single-process run.
* gradients (weights and alphas) are all-reduced weighted by the shard sizes, so every rank takes
  the same optimizer step as one process on the whole batch, up to float summation order and
  BatchNorm's per-shard statistics; BN running statistics are averaged at each epoch's end.
* only rank 0 touches the run directory: it reads a checkpoint and broadcasts it, and writes it.

With one process and ``device="cpu"`` none of this code runs: results are bit-identical to a
plain loop.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .errors import UsageError

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


@dataclass(frozen=True)
class Compute:
    device: str = "cpu"          # a torch device string: "cpu" or "cuda:N"
    rank: int = 0
    world: int = 1
    data_workers: int = 2        # DataLoader worker processes for lazily decoded data (image folders)

    @property
    def kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def alone(self) -> "Compute":
        """This process's device without the other ranks (rank 0's QAT: brevitas modules do not
        pickle, so they cannot be broadcast as a job)."""
        return Compute(self.device, 0, 1, self.data_workers)

    def device_name(self) -> str:
        """The device type a search cost is reported per: the GPU's name, or the CPU model."""
        if self.kind == "cuda":
            import torch

            return torch.cuda.get_device_name(self.device)
        return _cpu_model()

    # -- collectives (no-ops in one process) ---------------------------------------------------
    def broadcast(self, obj: Any = None) -> Any:
        """``obj`` as rank 0 has it, on every rank (pickled over the gloo control group)."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        with _waiting():
            dist.broadcast_object_list(box, src=0, group=_control_group())
        return box[0]

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        with _waiting():
            dist.all_reduce(t)
        return t.tolist()

    def reduce_gradients(self, params: list, n_local: int) -> int:
        """Replace each parameter's gradient by the batch-size-weighted mean over the ranks
        (what one process computes on the whole batch, for a mean loss); returns the whole
        batch's size. A rank with an empty shard contributes zeros."""
        if not self.distributed:
            return n_local
        import torch
        import torch.distributed as dist

        dev = self._collective_device()
        dtype = params[0].dtype if params else torch.float32
        flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dev) * n_local for p in params]
        used = torch.tensor([float(p.grad is not None) for p in params] + [float(n_local)], device=dev, dtype=dtype)
        buf = torch.cat(flat + [used])
        with _waiting():
            dist.all_reduce(buf)
        total = float(buf[-1])
        offset, tail = 0, buf[-len(params) - 1 : -1]
        for i, p in enumerate(params):
            n = p.numel()
            # a parameter no rank used keeps no gradient, as in one process (Adam then skips it)
            p.grad = (buf[offset : offset + n] / max(total, 1.0)).view_as(p).to(p.device) if tail[i] > 0 else None
            offset += n
        return int(total)

    def average_buffers(self, module) -> None:
        """BatchNorm running statistics: each rank saw its own shards; all use their mean."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for b in module.buffers():
            if b.is_floating_point():
                t = b.detach().to(self._collective_device())
                with _waiting():
                    dist.all_reduce(t)
                b.copy_(t / self.world)

    def _collective_device(self) -> str:
        return self.device   # NCCL reduces on the GPU, gloo on the CPU

    # -- jobs ------------------------------------------------------------------------------------
    def run(self, fn: Callable, *args, local: dict | None = None, **kwargs):
        """``fn(*args, compute=self, **kwargs, **local)`` on every rank: rank 0 broadcasts the job
        to the serving ranks first. ``local`` holds what stays on rank 0 (progress callbacks)."""
        if self.distributed:
            self.broadcast((fn, args, kwargs))
        return self._job(fn, args, {**kwargs, **(local or {})})

    def serve(self) -> None:
        """The loop of a rank other than 0: run each broadcast job until rank 0 says stop."""
        while True:
            job = self.broadcast()
            if job is None:
                return
            fn, args, kwargs = job
            self._job(fn, args, kwargs)

    def _job(self, fn: Callable, args: tuple, kwargs: dict):
        """Run one job and add its time to ``USAGE``: the wall time, and the ranks' busy time
        (wall minus time spent waiting in collectives), summed over the ranks on rank 0."""
        t0, w0 = time.perf_counter(), _WAIT[0]
        out = fn(*args, compute=self, **kwargs)
        wall = time.perf_counter() - t0
        busy = self.all_sum([wall - (_WAIT[0] - w0)])[0] if self.distributed else wall
        USAGE.add(wall, busy)
        return out

    def stop(self) -> None:
        """Rank 0: release the serving ranks (after the build, or when it failed)."""
        if self.distributed and self.is_main:
            self.broadcast(None)


CPU = Compute()

_CONTROL = None
_WAIT = [0.0]   # seconds this process spent inside collectives


@contextmanager
def _waiting():
    t = time.perf_counter()
    try:
        yield
    finally:
        _WAIT[0] += time.perf_counter() - t


class Usage:
    """Training time of this process's jobs since the last ``take``: wall seconds and the
    ranks' summed busy seconds. ``busy / wall`` bounds the speed-up of N ranks over one from
    above (N when no rank ever waits; exactly 1 for one process; build/cost.py)."""

    def __init__(self):
        self.wall, self.busy = 0.0, 0.0

    def add(self, wall: float, busy: float) -> None:
        self.wall, self.busy = self.wall + wall, self.busy + busy

    def take(self) -> tuple[float, float]:
        out, (self.wall, self.busy) = (self.wall, self.busy), (0.0, 0.0)
        return out


USAGE = Usage()


def _control_group():
    """A gloo group for pickled control messages, also when the gradients go over NCCL."""
    import torch.distributed as dist

    global _CONTROL
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    if _CONTROL is None:   # made once per process group, by every rank (init_distributed resets it)
        _CONTROL = dist.new_group(backend="gloo")
    return _CONTROL


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return "cpu: " + (platform.processor() or platform.machine())


def resolve_device(spec: str, local_rank: int = 0) -> str:
    """``--train-device`` as a torch device string; ``auto`` is CUDA when torch sees a GPU.
    Under several processes per machine, plain ``cuda`` means the process's own GPU."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    kind, _, index = spec.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UsageError(f"--train-device {spec!r}: choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise UsageError(f"--train-device {spec}: torch sees no CUDA GPU here (torch {torch.__version__}); use cpu or auto")
    n = int(index) if index else local_rank % torch.cuda.device_count()
    if n >= torch.cuda.device_count():
        raise UsageError(f"--train-device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return f"cuda:{n}"


def resolve_compute(spec: str = "cpu", data_workers: int = 2) -> Compute:
    """One process (or this process of a group already started, see ``init_distributed``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return Compute(resolve_device(spec, local), rank, world, data_workers)
    return Compute(resolve_device(spec), 0, 1, data_workers)


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_distributed(spec: str, data_workers: int, rank: int | None = None, world: int | None = None,
                     init_method: str = "env://") -> Compute:
    """Join the process group (gloo on CPU, NCCL on CUDA) and resolve this rank's ``Compute``."""
    import datetime

    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"]) if rank is None else rank
    world = int(os.environ["WORLD_SIZE"]) if world is None else world
    device = resolve_device(spec, int(os.environ.get("LOCAL_RANK", rank)))
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    else:   # the ranks of one machine share its cores
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    global _CONTROL
    _CONTROL = None
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", init_method=init_method, rank=rank,
                            world_size=world, timeout=datetime.timedelta(minutes=30))
    return Compute(device, rank, world, data_workers)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world: int, port: int, spec: str, data_workers: int) -> None:
    compute = init_distributed(spec, data_workers, rank, world, f"tcp://127.0.0.1:{port}")
    try:
        compute.serve()
    finally:
        import torch.distributed as dist

        dist.destroy_process_group()


def _fix_cpu_threads() -> None:
    """Fix torch's intra-op thread count when a command starts, from the cores this process may
    use then (a user's ``taskset`` included). Left alone, torch sizes its pool at its first
    parallel op from the affinity mask of that moment, and TVM's runtime binds the calling thread
    to one core when it runs a library in this process (a local measurement, docs/measurement.md):
    a build that measures before it trains would train with another thread count, its float
    reductions in another order, and one seed would not give one search."""
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


@contextmanager
def compute_group(spec: str = "cpu", nproc: int = 1, data_workers: int = 2) -> Iterator[Compute]:
    """The ``Compute`` of ``--train-device``/``--nproc``, for the duration of a command.

    Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) this process joins that group. With
    ``nproc > 1`` this process becomes rank 0 and spawns ranks 1..N-1 on loopback (gloo; NCCL on
    CUDA), which serve jobs until rank 0 releases them. When the command fails the spawned ranks
    are terminated rather than released (they may be waiting inside a collective)."""
    import multiprocessing as mp

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1 (got {nproc})")
    if data_workers < 0:
        raise UsageError(f"--data-workers must be 0 or more (got {data_workers})")
    if under_torchrun():
        if nproc != 1:
            raise UsageError("--nproc and torchrun both start processes: under torchrun leave --nproc at 1")
        compute, procs = init_distributed(spec, data_workers), []
    elif nproc > 1:
        port = free_port()
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_spawned, args=(r, nproc, port, spec, data_workers), daemon=True)
                 for r in range(1, nproc)]
        for p in procs:
            p.start()
        compute = init_distributed(spec, data_workers, 0, nproc, f"tcp://127.0.0.1:{port}")
    else:
        compute = resolve_compute(spec, data_workers)
        if compute.kind == "cpu":
            _fix_cpu_threads()
        yield compute
        return
    import torch.distributed as dist

    ok = False
    try:
        yield compute
        ok = True
    finally:
        if ok:
            compute.stop()
            for p in procs:
                p.join(timeout=60)
        for p in procs:
            if p.is_alive():
                p.terminate()
        if dist.is_initialized():
            dist.destroy_process_group()
