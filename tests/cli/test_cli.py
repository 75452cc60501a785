"""The command line: instant help, one-line errors with the right exit codes, no tracebacks."""

import subprocess
import sys
from pathlib import Path

import pytest

from buildkit import edgenas_cmd

REPO = Path(__file__).resolve().parents[2]


def run(*args, timeout=120):
    return subprocess.run(edgenas_cmd(*args), capture_output=True, text=True, timeout=timeout)


def test_help_does_not_import_torch_or_tvm():
    code = "import sys, edgenas.cli; assert not {'torch', 'tvm'} & set(sys.modules), sorted(m for m in sys.modules if m in ('torch','tvm'))"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_teaches_the_commands():
    out = run("--help").stdout
    for word in ("build", "compile", "targets"):
        assert word in out
    assert "--latency-budget" in run("build", "--help").stdout


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["build", "--target", "pi-zero"], 2, ["unknown target 'pi-zero'", "x86-avx2"]),
        (["build", "--data", "cifar10:/no/such/dir"], 2, ["/no/such/dir"]),
        (["build", "--data", "mnist"], 2, ["unknown data set"]),
        (["build", "--rounds", "0"], 2, ["--rounds"]),
        (["build", "--latency-budget", "-3ms"], 2, ["--latency-budget"]),
        (["build", "--latency-budget", "fast"], 2, ["--latency-budget"]),
        (["targets", "show", "nope"], 2, ["unknown target"]),
    ],
)
def test_bad_input_gives_one_line(args, code, words, tmp_path):
    proc = run(*args, "--out", str(tmp_path / "o")) if args[0] == "build" else run(*args)
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_malformed_target_toml_gives_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'bad'\narch = 'x86_64'\n[tvm.target]\nkind = 'llvm'\nmcpu = 3\n[runner\n")
    proc = run("targets", "show", str(bad))
    assert proc.returncode == 2 and str(bad) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback():
    proc = run("--debug", "targets", "show", "nope")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_targets_list_shows_every_target():
    out = run("targets", "list").stdout
    for name in ("x86-avx2", "x86-avx512-vnni", "x86-avx-vnni", "rpi4", "rpi5", "jetson-orin", "cuda-sm80", "cuda-sm90"):
        assert name in out   # whole even in 80 columns (the name column never folds)


def test_targets_show_gives_the_weight_bits():
    """``[int8] weight_bits``: the QAT's weight width cap (7 on x86-avx2, 8 where the file has none
    or, as on x86-avx-vnni, says 8), and the int8 dot product beside it."""
    import re

    for name, bits, dot in (("x86-avx2", 7, "avx2"), ("rpi4", 8, "neon"), ("x86-avx-vnni", 8, "avxvnni")):
        out = run("targets", "show", name).stdout
        assert re.search(rf"weight bits \(QAT cap\)\W+{bits}\W*$", out, re.M), out
        assert re.search(rf"int8 dot product\W+{dot}\W*$", out, re.M), out


def _build_options(**given):
    """``edgenas build``'s defaults (read from the command itself) with ``given`` on top."""
    import inspect

    from edgenas.cli import build as cli

    wanted = inspect.signature(cli.build_config).parameters   # the options that shape the build itself
    opts = {name: p.default.default for name, p in inspect.signature(cli.build).parameters.items()
            if name in wanted and name != "spec"}
    return cli.build_config(**{**opts, **given})


def test_method_options_reach_the_build_config():
    cfg = _build_options(bits="4,8", sparse=True, space="evolve", strategy="random", selection="pt")
    assert cfg.space.bits == (4, 8) and cfg.search.noise == "gauss"           # QuantNAS mixed precision turns on
    assert cfg.search.entropy_weight > 0 and cfg.search.bitops_weight > 0
    assert cfg.space.sparse_levels == (0.75,) and cfg.search.sparsity_weight > 0   # DASS
    assert cfg.space_mode == "evolve" and cfg.strategy == "random" and cfg.search.selection == "pt"
    cfg.validate()


def test_default_bits_come_from_the_target_file_and_bits_overrides(tmp_path):
    default = _build_options()
    assert default.space.bits == (8,) and default.search.noise == "none" and default.space.sparse_levels == ()
    assert default.space_mode == "default" and default.strategy == "darts"
    text = (REPO / "targets" / "x86-avx2.toml").read_text().replace("bits = [8]", "bits = [4, 8]")
    mixed = tmp_path / "x86-mixed.toml"
    mixed.write_text(text)
    assert _build_options(target=str(mixed)).space.bits == (4, 8)
    assert _build_options(target=str(mixed), bits="8").space.bits == (8,)      # --bits overrides the target file
    from edgenas.errors import UsageError

    with pytest.raises(UsageError, match="between 2 and 8"):
        _build_options(bits="16")


def test_build_command_hands_its_options_to_build_config(monkeypatch, tmp_path):
    """The flags as typed on the command line reach the BuildConfig the build runs with."""
    import typer
    from typer.testing import CliRunner

    import edgenas.build
    from edgenas.cli import app

    seen = []

    def fake_build(cfg, *args, **kwargs):
        seen.append(cfg)
        raise typer.Exit(0)

    monkeypatch.setattr(edgenas.build, "build", fake_build)
    res = CliRunner().invoke(app, ["build", "--bits", "4,8", "--sparse", "--space", "evolve", "--strategy", "random",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    (cfg,) = seen
    assert cfg.space.bits == (4, 8) and cfg.space.sparse_levels == (0.75,)
    assert cfg.space_mode == "evolve" and cfg.strategy == "random"
