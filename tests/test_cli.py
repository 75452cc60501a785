"""The command line: instant help, one-line errors with the right exit codes, no tracebacks."""

import subprocess
import sys

import pytest

from buildkit import edgenas_cmd


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
    for name in ("x86-avx2", "rpi4", "rpi5", "jetson-orin", "cuda-sm80"):
        assert name in out
