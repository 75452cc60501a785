"""Targets are data: one TOML file per device in ``targets/``.

A target names the TVM target dict, the host target, the cross compiler (if any), how the device
is reached (local CPU, TVM RPC key, or compile-only), its INT8 capabilities, and the search
defaults that suit it (``[search] bits``: the per-layer bit widths ``edgenas build`` searches
when ``--bits`` is not given; ``[8]`` for INT8 targets, issue 4's default: a narrower width
lowers BitOps but is only faster on a device with kernels for it) and ``[int8] weight_bits``, the
widest weights its fast int8 kernels take exactly (default 8; x86-avx2 asks for 7, so that
``vpmaddubsw``'s saturating int16 pair sums are exact: docs/quantization.md). Validation is strict so that
a typo fails here, naming the file and the field, not halfway through a tune.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError, UsageError
from .registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS_DIR = Path(os.environ.get("EDGENAS_TARGETS_DIR", REPO_ROOT / "targets"))

TVM_KINDS = ("llvm", "cuda")
RUNNERS = ("local", "rpc", "none")
INT8_DOT = ("none", "avx2", "vnni", "avxvnni", "avx512", "neon", "sdot", "i8mm", "dp4a")
ARCHES = ("x86_64", "aarch64")
BIT_WIDTHS = range(2, 9)            # the widths quantization recipes support (quantize/recipe.py: 2..8)
DEFAULT_SEARCH_BITS = (8,)          # a target file without [search] searches INT8 only
DEFAULT_WEIGHT_BITS = 8             # a target file without [int8] weight_bits: full int8 weights


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A device edgenas compiles for. ``tvm_target`` and ``tvm_host`` are TVM 0.27 target dicts."""

    name: str
    description: str
    arch: str
    tvm_target: dict
    tvm_host: dict | None
    cross_compiler: str | None
    runner: str
    rpc_key: str | None
    int8_dot: str
    path: str
    search_bits: tuple[int, ...] = DEFAULT_SEARCH_BITS   # [search] bits: build's default --bits
    local_if_cpu_has: tuple[str, ...] = ()   # [runner] local_if_cpu_has: /proc/cpuinfo flags
    # [int8] weight_bits: the widest weights edgenas trains for this target (quantize.recipe.for_target
    # caps the recipe and every layer's searched width at it); 7 on x86-avx2 (vpmaddubsw, see the file)
    int8_weight_bits: int = DEFAULT_WEIGHT_BITS
    # [int8] fuse_blocks: MobileNetV2 inverted-residual blocks as one kernel where the packed kernel
    # is VNNI (compile/fused_block.py, docs/int8_kernels.md); false builds them unfused, to compare
    int8_fuse_blocks: bool = True

    @property
    def is_cuda(self) -> bool:
        return self.tvm_target["kind"] == "cuda"

    @property
    def is_cross(self) -> bool:
        return self.cross_compiler is not None

    @property
    def measurable_locally(self) -> bool:
        """A local runner, or a device target whose ISA this host has (``[runner]
        local_if_cpu_has``: e.g. x86-avx512-vnni on a VNNI host is tuned and measured here)."""
        return self.runner == "local" or self.host_has_isa

    @property
    def host_has_isa(self) -> bool:
        import platform

        if not self.local_if_cpu_has or platform.machine() != self.arch or self.is_cross:
            return False
        return set(self.local_if_cpu_has) <= host_cpu_flags()

    def tvm(self):
        """The ``tvm.target.Target`` (imports tvm lazily)."""
        import tvm

        if self.tvm_host is not None:
            return tvm.target.Target(self.tvm_target, host=self.tvm_host)
        return tvm.target.Target(self.tvm_target)

    def check_host_prerequisites(self) -> None:
        """Fail before long work if this host cannot build for the target."""
        if self.cross_compiler and shutil.which(self.cross_compiler) is None:
            raise UsageError(
                f"target {self.name!r} needs the cross compiler {self.cross_compiler!r}, which is not on PATH",
                hint="install it with: apt-get install g++-aarch64-linux-gnu  (or run scripts/setup_cross)",
            )
        if self.is_cuda and shutil.which("nvcc") is None:
            raise UsageError(
                f"target {self.name!r} needs nvcc (CUDA toolkit) to build a fatbin, which is not on PATH",
                hint="install the CUDA toolkit or choose a CPU target",
            )
        for field, d in (("tvm.target", self.tvm_target), ("tvm.host", self.tvm_host)):
            if d is not None:
                _check_mcpu(Path(self.path), field, d)


def _check_mcpu(path: Path, field: str, d: dict) -> None:
    """An ``mcpu`` LLVM does not know for the triple is refused before compiling: LLVM only
    prints an error and builds a generic (slow, or for the wrong ISA) library."""
    if d.get("kind") != "llvm" or "mcpu" not in d:
        return
    from tvm.target import Target, codegen

    triple = d.get("mtriple") or codegen.llvm_get_system_triple()
    if not codegen.llvm_is_valid_cpu(d["mcpu"], triple):
        known = sorted(set(codegen.llvm_get_cpu_archlist(Target({"kind": "llvm", "mtriple": triple}))))
        raise ConfigError(path, f"{field}.mcpu", f"LLVM does not know CPU {d['mcpu']!r} for {triple}; "
                                                 f"it knows: {', '.join(known)}")


def host_cpu_flags() -> frozenset[str]:
    """This host's CPU feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return frozenset(line.split(":", 1)[-1].split())


_SCHEMA: dict[str, dict[str, type | tuple]] = {
    "": {"name": str, "description": str, "arch": str, "tvm": dict, "build": dict, "runner": dict, "int8": dict,
         "search": dict},
    "tvm": {"target": dict, "host": dict},
    "build": {"cross_compiler": str},
    "runner": {"kind": str, "rpc_key": str, "local_if_cpu_has": list},
    "int8": {"dot_product": str, "weight_bits": int, "fuse_blocks": bool},
    "search": {"bits": list},
}
_REQUIRED = {"": ("name", "description", "arch", "tvm", "runner", "int8"), "tvm": ("target",), "runner": ("kind",), "int8": ("dot_product",)}


def _check_table(path: Path, section: str, table: dict) -> None:
    schema = _SCHEMA[section]
    prefix = f"{section}." if section else ""
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(path, prefix + key, f"unknown key; expected one of {', '.join(schema)}")
        if not isinstance(value, schema[key]):
            want = schema[key].__name__ if isinstance(schema[key], type) else schema[key]
            raise ConfigError(path, prefix + key, f"expected {want}, got {type(value).__name__}")
    for key in _REQUIRED.get(section, ()):
        if key not in table:
            raise ConfigError(path, prefix + key, "missing required key")


def _choice(path: Path, field: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(path, field, f"unknown value {value!r}; expected one of {', '.join(choices)}")
    return value


def _bits(path: Path, field: str, value: list) -> tuple[int, ...]:
    """A non-empty list of distinct bit widths in ``BIT_WIDTHS``, as a sorted tuple."""
    ok = value and all(isinstance(b, int) and not isinstance(b, bool) and b in BIT_WIDTHS for b in value)
    if not ok or len(set(value)) != len(value):
        raise ConfigError(path, field, f"expected a non-empty list of distinct bit widths between {BIT_WIDTHS[0]} "
                                       f"and {BIT_WIDTHS[-1]}, e.g. [8] or [4, 8]; got {value!r}")
    return tuple(sorted(value))


def _weight_bits(path: Path, field: str, value: int) -> int:
    """One bit width in ``BIT_WIDTHS`` (a TOML ``true`` is an int to ``isinstance``, so refused here)."""
    if isinstance(value, bool) or value not in BIT_WIDTHS:
        raise ConfigError(path, field, f"expected a bit width between {BIT_WIDTHS[0]} and {BIT_WIDTHS[-1]}, "
                                       f"e.g. 8 or 7; got {value!r}")
    return value


def _flags(path: Path, field: str, value: list) -> tuple[str, ...]:
    if not all(isinstance(f, str) and f and f == f.strip() for f in value):
        raise ConfigError(path, field, f"expected a list of /proc/cpuinfo flags such as [\"avx512_vnni\"], got {value!r}")
    return tuple(value)


def _tvm_dict(path: Path, field: str, d: dict) -> dict:
    kind = d.get("kind")
    if kind is None:
        raise ConfigError(path, field + ".kind", "missing required key")
    _choice(path, field + ".kind", kind, TVM_KINDS)
    d = dict(d)
    if d.get("num-cores") == "auto":
        d["num-cores"] = os.cpu_count() or 1
    return d


def load_target_file(path: str | os.PathLike) -> TargetSpec:
    path = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such target file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML ({e})") from None
    _check_table(path, "", raw)
    for section in ("tvm", "build", "runner", "int8", "search"):
        _check_table(path, section, raw.get(section, {}))
    runner = raw["runner"]
    kind = _choice(path, "runner.kind", runner["kind"], RUNNERS)
    if kind == "rpc" and "rpc_key" not in runner:
        raise ConfigError(path, "runner.rpc_key", "required when runner.kind = 'rpc'")
    host = raw["tvm"].get("host")
    return TargetSpec(
        name=raw["name"],
        description=raw["description"],
        arch=_choice(path, "arch", raw["arch"], ARCHES),
        tvm_target=_tvm_dict(path, "tvm.target", raw["tvm"]["target"]),
        tvm_host=_tvm_dict(path, "tvm.host", host) if host is not None else None,
        cross_compiler=raw.get("build", {}).get("cross_compiler"),
        runner=kind,
        rpc_key=runner.get("rpc_key"),
        int8_dot=_choice(path, "int8.dot_product", raw["int8"]["dot_product"], INT8_DOT),
        path=str(path),
        search_bits=_bits(path, "search.bits", raw["search"]["bits"]) if "bits" in raw.get("search", {}) else DEFAULT_SEARCH_BITS,
        local_if_cpu_has=_flags(path, "runner.local_if_cpu_has", runner.get("local_if_cpu_has", [])),
        int8_weight_bits=_weight_bits(path, "int8.weight_bits", raw["int8"].get("weight_bits", DEFAULT_WEIGHT_BITS)),
        int8_fuse_blocks=raw["int8"].get("fuse_blocks", True),
    )


def _discover(directory: Path = TARGETS_DIR) -> Registry[Path]:
    reg: Registry[Path] = Registry("target")
    for p in sorted(directory.glob("*.toml")):
        reg.register(p.stem, p)
    return reg


def list_targets() -> list[str]:
    return _discover().names()


def get_target(name_or_path: str) -> TargetSpec:
    """A target by registry name (``targets/NAME.toml``) or by path to a TOML file."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_target_file(name_or_path)
    spec = load_target_file(_discover().get(name_or_path))
    if spec.name != name_or_path:
        raise ConfigError(spec.path, "name", f"is {spec.name!r} but the file is named {name_or_path}.toml")
    return spec
