"""Quantization recipes are data: one TOML per recipe in ``quant/``.

A recipe says bit widths, granularity and symmetry for weights and activations, the QAT
schedule, and which layers stay float. Validation mirrors the target loader: unknown keys and
wrong types fail naming the file and field.

A target may cap the weight width (``[int8] weight_bits``, 7 on x86-avx2): :func:`for_target`
applies the cap to a recipe once, where a build resolves it, and ``to_brevitas`` applies the
recipe's cap to every layer it builds (docs/quantization.md).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, UsageError
from ..records import record
from ..registry import Registry
from ..target import REPO_ROOT

RECIPES_DIR = Path(os.environ.get("EDGENAS_RECIPES_DIR", REPO_ROOT / "quant"))

_SCHEMA = {
    "": {"name": str, "description": str, "weights": dict, "activations": dict, "qat": dict, "float": dict},
    "weights": {"bits": int, "granularity": str, "symmetric": bool},
    "activations": {"bits": int, "granularity": str, "unsigned_after_relu": bool},
    "qat": {"epochs": int, "lr": float},
    "float": {"layers": list},
}


@record("quant_recipe")
@dataclass(frozen=True)
class QuantRecipe:
    name: str
    description: str = ""
    weight_bits: int = 8
    weight_per_channel: bool = True
    weight_symmetric: bool = True
    act_bits: int = 8
    unsigned_after_relu: bool = True
    qat_epochs: int = 6
    qat_lr: float = 5e-4
    float_layers: tuple[str, ...] = ()
    # the widest weights any layer gets, whatever the recipe or the searched architecture asks for
    # (the target's [int8] weight_bits, set by for_target; 8 means no cap)
    max_weight_bits: int = 8

    def capped(self, w_bits: int) -> int:
        """The weight width a layer asking for ``w_bits`` is really quantized at."""
        return min(w_bits, self.max_weight_bits)


def for_target(recipe: QuantRecipe, target) -> QuantRecipe:
    """``recipe`` capped at ``target``'s weight width (``TargetSpec.int8_weight_bits``, the
    ``[int8] weight_bits`` of its TOML): the recipe's own width and every per-layer width
    (``LayerChoice.w_bits``, applied by ``to_brevitas`` through :meth:`QuantRecipe.capped`)
    become at most that, so an 8-bit layer is trained and exported at 7 bits for x86-avx2 and a
    4-bit layer stays 4. Pure and idempotent (capping twice, or at a wider target, changes
    nothing); the name is kept, so runs and bundles still name the recipe file they used."""
    cap = min(recipe.max_weight_bits, target.int8_weight_bits)
    if cap == recipe.max_weight_bits and recipe.weight_bits <= cap:
        return recipe
    return dataclasses.replace(recipe, weight_bits=min(recipe.weight_bits, cap), max_weight_bits=cap)


def load_recipe_file(path: str | os.PathLike) -> QuantRecipe:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such recipe file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML ({e})") from None
    for section, schema in _SCHEMA.items():
        table = raw if not section else raw.get(section, {})
        for key, value in table.items():
            field = f"{section}.{key}" if section else key
            if key not in schema:
                raise ConfigError(path, field, f"unknown key; expected one of {', '.join(schema)}")
            want = schema[key]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ConfigError(path, field, f"expected {want.__name__}, got {type(value).__name__}")
    if "name" not in raw:
        raise ConfigError(path, "name", "missing required key")
    w, a, q = raw.get("weights", {}), raw.get("activations", {}), raw.get("qat", {})
    gran = w.get("granularity", "per-channel")
    if gran not in ("per-channel", "per-tensor"):
        raise ConfigError(path, "weights.granularity", f"unknown value {gran!r}; expected per-channel or per-tensor")
    if a.get("granularity", "per-tensor") != "per-tensor":
        raise ConfigError(path, "activations.granularity", "only per-tensor activation scales are supported")
    for field, bits in (("weights.bits", w.get("bits", 8)), ("activations.bits", a.get("bits", 8))):
        if not 2 <= bits <= 8:
            raise ConfigError(path, field, f"{bits} bits: supported widths are 2..8")
    if not w.get("symmetric", True):
        raise ConfigError(path, "weights.symmetric", "asymmetric weights are not supported by the integer rewrite")
    return QuantRecipe(
        name=raw["name"],
        description=raw.get("description", ""),
        weight_bits=w.get("bits", 8),
        weight_per_channel=gran == "per-channel",
        act_bits=a.get("bits", 8),
        unsigned_after_relu=a.get("unsigned_after_relu", True),
        qat_epochs=q.get("epochs", 6),
        qat_lr=float(q.get("lr", 5e-4)),
        float_layers=tuple(raw.get("float", {}).get("layers", [])),
    )


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def get_recipe(name_or_path: str) -> QuantRecipe:
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_recipe_file(name_or_path)
    reg: Registry[Path] = Registry("recipe")
    for p in sorted(RECIPES_DIR.glob("*.toml")):
        reg.register(p.stem, p)
    return load_recipe_file(reg.get(name_or_path))
