"""The search cost of a run in device-hours per device type, and the speed-up of its ranks.

Each timed stage appends a segment to ``compute.json`` (kept across resumes, which may use a
different device or number of processes): the stage's wall seconds, how much of them were
training jobs, on which device and on how many processes, and the ranks' summed busy seconds.
Training jobs occupy every process of the group on the training device; the rest of a stage
(profiling, compiling, measuring) is one process on the measuring host or farm device. The
speed-up bound is busy / wall over the training jobs (``compute.Usage``; docs/distributed.md):
N when no rank ever waits for another, exactly 1 for one process. It is an upper bound: it
assumes a rank's busy time is what one process would spend on its share, which a shared or
oversubscribed CPU breaks (the README's measured ``--nproc`` comparison shows by how much).
"""

from __future__ import annotations

from pathlib import Path

from .. import fsio

SEARCH_STAGES = ("profile", "evolve", "search", "feedback")   # what ``Manifest.search_cost_s`` sums


def add_segment(path: Path, stage: str, seconds: float, train_wall: float, busy: float, train_device: str,
                processes: int, host: str) -> None:
    segments = fsio.read_json(path) if path.exists() else []
    segments.append({"stage": stage, "seconds": round(seconds, 3), "train_wall_s": round(train_wall, 3),
                     "busy_s": round(busy, 3), "train_device": train_device, "processes": processes, "host": host})
    fsio.write_json(path, segments)


def search_cost(path: Path) -> dict:
    """``{"device_hours": {device: hours}, "processes": [..], "speedup_bound": busy/wall | None}`` over
    the search stages' segments (empty without a ``compute.json``: runs of older versions)."""
    if not path.exists():
        return {}
    hours: dict[str, float] = {}
    wall = busy = 0.0
    procs = set()
    for s in fsio.read_json(path):
        if s["stage"] not in SEARCH_STAGES:
            continue
        dev = f"{s['train_device']}"
        hours[dev] = hours.get(dev, 0.0) + s["train_wall_s"] * s["processes"] / 3600
        rest = max(0.0, s["seconds"] - s["train_wall_s"])
        if rest:
            hours[s["host"]] = hours.get(s["host"], 0.0) + rest / 3600
        if s["train_wall_s"]:
            wall, busy = wall + s["train_wall_s"], busy + s["busy_s"]
            procs.add(s["processes"])
    return {"device_hours": {k: round(v, 5) for k, v in hours.items() if v > 0}, "processes": sorted(procs),
            "speedup_bound": round(busy / wall, 2) if wall else None}


def cost_line(cost: dict) -> str:
    """The cost as the summary and the report print it."""
    if not cost:
        return ""
    hours = ", ".join(f"{h:.4f} h {dev}" for dev, h in cost["device_hours"].items())
    procs = "/".join(str(p) for p in cost["processes"]) or "1"
    bound = cost.get("speedup_bound")
    speed = f", speed-up over one process at most {bound:.2f}x (ranks' busy / wall)" if bound and max(cost["processes"]) > 1 else ""
    return f"{hours}; {procs} training process(es){speed}"
