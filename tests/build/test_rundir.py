"""``RunDir.read``: the one way readers open a run directory (checks, one message, writes nothing)."""

from __future__ import annotations

import pytest

from edgenas import fsio
from edgenas.build.rundir import RunDir
from edgenas.errors import UsageError


def test_a_folder_without_state_is_not_a_run_and_nothing_is_created(tmp_path):
    with pytest.raises(UsageError, match="not an edgenas run directory"):
        RunDir.read(tmp_path)
    with pytest.raises(UsageError, match="no finished edgenas run") as e:
        RunDir.read(tmp_path, finished=True)
    assert "pass a run directory" in str(e.value.hint)
    assert list(tmp_path.iterdir()) == []


def test_an_unfinished_run_reads_but_is_not_finished(tmp_path):
    fsio.write_json(tmp_path / "state.json", {"config": {"rounds": 2}, "completed": {"op_table": {}}, "created": 0})
    run = RunDir.read(tmp_path)
    assert run.config() == {"rounds": 2} and run.done("op_table") and not run.done("qat")
    with pytest.raises(UsageError, match="no finished edgenas run") as e:
        RunDir.read(tmp_path, finished=True)
    assert "--resume" in str(e.value.hint)
    assert not (tmp_path / ".lock").exists()   # reading takes no lock
