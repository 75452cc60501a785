"""``edgenas build --target A,B``: one supernet training, one sub-run, bundle and front per target."""

from __future__ import annotations

import json

import pytest

from buildkit import run_cli

from edgenas.target import get_target


@pytest.mark.parametrize("targets, extra, message", [
    ("x86-avx2,x86-avx2", [], "--target names x86-avx2 more than once"),
    ("x86-avx2,x86-avx512-vnni", ["--strategy", "random"], "--strategy random cannot be combined with several targets"),
    ("x86-avx2,x86-avx512-vnni", ["--space", "evolve"], "--space evolve (SpaceEvo evolves one space per target)"),
    ("x86-avx2,rpi4", ["--tracker", "127.0.0.1:9", "--key", "rpi4"], "with several targets give TARGET=KEY pairs"),
    ("x86-avx2,x86-avx512-vnni", ["--finetune-epochs", "0"], "--finetune-epochs must be at least 1"),
])
def test_bad_target_lists_are_refused_before_anything_is_written(tmp_path, targets, extra, message):
    from typer.testing import CliRunner

    from edgenas.cli.app import app

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["build", "--target", targets, "--out", str(out), *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_unknown_target_in_the_list_names_the_valid_ones(tmp_path):
    """Through the console entry point, as a user sees it: one line, exit 2."""
    proc = run_cli("build", "--target", "x86-avx2,nope", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    from edgenas.target import list_targets

    assert proc.stderr.strip() == f"error: unknown target 'nope'; choose from: {', '.join(list_targets())}"


def test_help_teaches_several_targets():
    from typer.testing import CliRunner

    from edgenas.cli.app import app

    text = CliRunner().invoke(app, ["build", "--help"], env={"COLUMNS": "250"}).output
    assert "comma-separated" in text and "--finetune-epochs" in text and "OUT/<target>/" in text


@pytest.mark.slow
def test_two_target_build_shares_one_supernet(tmp_path, tiny_recipe):
    """Tiny data, one round, no tuning trials. Needs a second target measurable here: this host's
    AVX-512 VNNI (skipped where the CPU lacks it)."""
    if not get_target("x86-avx512-vnni").measurable_locally:
        pytest.skip("this CPU has no AVX-512 VNNI: x86-avx512-vnni cannot be measured here")
    out = tmp_path / "multi"
    args = ["build", "--target", "x86-avx2,x86-avx512-vnni", "--out", str(out), "--rounds", "1", "--image-size", "8",
            "--search-epochs", "2", "--epochs", "1", "--finetune-epochs", "1", "--samples", "0",
            "--recipe", str(tiny_recipe)]
    proc = run_cli(*args, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert "supernet" in state["completed"] and (out / "supernet.pt").is_file()
    multi = json.loads((out / "multi.json").read_text())
    for name in ("x86-avx2", "x86-avx512-vnni"):
        sub = out / name
        assert (sub / "manifest.json").is_file() and (sub / name / "SHA256SUMS").is_file()
        # its search stepped alphas only: no weight training of its own
        search = json.loads((sub / "rounds" / "r1" / "search.json").read_text())["data"]
        assert search["history"] and all(h["w_loss"] is None for h in search["history"])
        assert multi["verified"][name] == "ok"
        front = multi["fronts"][name]["candidates"]
        assert sum(c["chosen"] for c in front) == 1 and any(c["on_front"] for c in front)
        assert any(c["source"] != "search" for c in front)   # the other target's model, measured here
        assert all(0 <= c["inherited_acc"] <= 1 and c["measured_ms"] > 0 for c in front)
    assert {(r["model_of"], r["on"]) for r in multi["cross"]} == {("x86-avx2", "x86-avx512-vnni"),
                                                                   ("x86-avx512-vnni", "x86-avx2")}
    html = (out / "report.html").read_text()
    assert 'id="fronts"' in html and 'id="cross-table"' in html and html.count("chosen for x86-avx") >= 2
    assert (out / "report" / "fronts.png").is_file()
    assert "multi-target" in proc.stdout and "wall" in proc.stdout
    # resumable: a second call finds every stage done and trains nothing again
    before = (out / "supernet.pt").stat().st_mtime_ns
    again = run_cli(*args, "--resume", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "supernet.pt").stat().st_mtime_ns == before
    assert "train the shared supernet" not in again.stdout and "--- target" not in again.stdout
    assert json.loads((out / "timing.json").read_text()) == json.loads(json.dumps(multi["seconds"]))
