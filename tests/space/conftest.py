"""Fixtures for the space tests: single-threaded torch (intra-op threads on a shared, loaded CPU
are several times slower than one thread) and a recipe for brevitas conversion."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def recipe():
    from edgenas.quantize.recipe import get_recipe

    return get_recipe("int8-per-channel")
