"""The software that built or measured something, recorded with it (manifests, measurements,
baselines), so that a number can be traced to the versions that produced it."""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata

from . import __version__

PACKAGES = ("torch", "apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "brevitas", "numpy", "scikit-learn")


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    out = {"edgenas": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return tuple(out.items())


def software_versions() -> dict[str, str]:
    """edgenas, Python, the OS and the versions of the packages that decide the numbers (read
    from the installed distributions, once per process)."""
    return dict(_versions())
