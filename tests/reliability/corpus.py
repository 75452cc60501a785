"""The bad-input corpus: what a user might feed edgenas, and the one line they must get back.

Cases are data. ``tests/reliability/test_bad_inputs.py`` asserts each one, and
``scripts/reliability_table`` runs the same cases and writes ``docs/reliability.md`` from what the
tool really printed, so the documentation cannot drift from the behaviour.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    name: str                              # what was tried, as the table shows it
    make: Callable[[Path], list[str]]      # builds the inputs in a temp dir, returns CLI args
    exit_code: int
    expect: tuple[str, ...]                # substrings of the one-line error
    wrap: Callable[[Path], list[str]] | None = None  # a command prefix the CLI runs under (a full disk)

    def command(self, tmp: Path, python: str) -> list[str]:
        args = self.make(tmp)
        return [*(self.wrap(tmp) if self.wrap else []), python, "-m", "edgenas.cli", *args]

    def runnable(self) -> bool:
        """Whether this host can set the case up (the full-disk case needs a user namespace)."""
        if self.wrap is None:
            return True
        import subprocess

        return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def _onnx_model(tmp: Path, op: str = "Relu", dims=(1, 4), domain: str = "") -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)
    p = tmp / f"{op}.onnx"
    onnx.save(model, p)
    return p


def _future_opset(tmp: Path) -> list[str]:
    import onnx

    p = _onnx_model(tmp)
    model = onnx.load(p)
    model.opset_import[0].version = 99
    onnx.save(model, p)
    return ["compile", str(p), "--out", str(tmp / "o.so")]


def _truncated(tmp: Path) -> list[str]:
    good = _onnx_model(tmp).read_bytes()
    p = tmp / "truncated.onnx"
    p.write_bytes(good[: len(good) // 2])
    return ["compile", str(p), "--out", str(tmp / "o.so")]


def _text_as_onnx(tmp: Path) -> list[str]:
    p = tmp / "notes.onnx"
    p.write_text("this is not a model\n")
    return ["compile", str(p), "--out", str(tmp / "o.so")]


def _unsupported_op(tmp: Path) -> list[str]:
    return ["compile", str(_onnx_model(tmp, op="Det", dims=(1, 3, 3))), "--out", str(tmp / "o.so")]


def _custom_domain(tmp: Path) -> list[str]:
    return ["compile", str(_onnx_model(tmp, op="FusedConv", domain="com.example")), "--out", str(tmp / "o.so")]


def _dynamic_batch(tmp: Path) -> list[str]:
    return ["compile", str(_onnx_model(tmp, dims=("N", 4))), "--out", str(tmp / "o.so")]


def _missing_cross_compiler(tmp: Path) -> list[str]:
    t = (REPO / "targets" / "rpi4.toml").read_text().replace("aarch64-linux-gnu-g++", "no-such-aarch64-g++")
    (tmp / "rpi4-nocc.toml").write_text(t.replace('name = "rpi4"', 'name = "rpi4-nocc"'))
    return ["compile", str(_onnx_model(tmp)), "--target", str(tmp / "rpi4-nocc.toml"), "--out", str(tmp / "o.so")]


def _target_file(tmp: Path, text: str) -> list[str]:
    (tmp / "t.toml").write_text(text)
    return ["build", "--target", str(tmp / "t.toml"), "--out", str(tmp / "run")]


def _recipe_file(tmp: Path, text: str) -> list[str]:
    (tmp / "r.toml").write_text(text)
    return ["build", "--recipe", str(tmp / "r.toml"), "--out", str(tmp / "run")]


def _empty_folder(tmp: Path) -> list[str]:
    (tmp / "imgs").mkdir()
    return ["build", "--data", f"folder:{tmp / 'imgs'}", "--out", str(tmp / "run")]


def _folder_not_images(tmp: Path) -> list[str]:
    for c in ("cat", "dog"):
        (tmp / "imgs" / c).mkdir(parents=True)
        for i in range(12):
            (tmp / "imgs" / c / f"{i}.png").write_text("not a png")
    return ["build", "--data", f"folder:{tmp / 'imgs'}", "--out", str(tmp / "run")]


def _cifar_wrong_files(tmp: Path) -> list[str]:
    d = tmp / "cifar"
    d.mkdir()
    (d / "data_batch_1").write_bytes(pickle.dumps({"nope": 1}))
    (d / "test_batch").write_bytes(b"garbage")
    return ["build", "--data", f"cifar10:{d}", "--out", str(tmp / "run")]


def _non_empty_out(tmp: Path) -> list[str]:
    (tmp / "run").mkdir()
    (tmp / "run" / "thesis.tex").write_text("keep me")
    return ["build", "--out", str(tmp / "run")]


def _unknown_mcpu(tmp: Path) -> list[str]:
    t = (REPO / "targets" / "x86-avx2.toml").read_text().replace('mcpu = "haswell"', 'mcpu = "haswel"')
    (tmp / "t.toml").write_text(t.replace('name = "x86-avx2"', 'name = "t"'))
    return ["compile", str(_onnx_model(tmp)), "--target", str(tmp / "t.toml"), "--out", str(tmp / "o.so")]


def echo_listener(reply: bytes | None = None) -> str:
    """``HOST:PORT`` of a listener that is not a TVM tracker: it echoes what it is sent (as a
    misconfigured port forward might), or answers every message with ``reply`` (an HTTP server).
    Served from a daemon thread of the calling process."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(reply if reply is not None else data)

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{srv.getsockname()[1]}"


def _not_a_tracker(tmp: Path) -> list[str]:
    return ["compile", str(_onnx_model(tmp)), "--tracker", echo_listener(), "--out", str(tmp / "o.so")]


def _fake_run(tmp: Path, **files: str) -> Path:
    """A run directory holding only ``files`` (name -> text); a valid unfinished state by default."""
    run = tmp / "run"
    (run / "rounds" / "r1").mkdir(parents=True)
    files = {"state.json": '{"config": {}, "completed": {}}', **files}
    for name, text in files.items():
        (run / name.replace("__", "/")).write_text(text)
    return run


def _package_over_a_user_folder(tmp: Path) -> list[str]:
    mine = tmp / "out" / "x86-avx2"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("keep me")
    return ["package", str(_fake_run(tmp)), "--target", "x86-avx2", "--out", str(tmp / "out")]


def _bundle_with_a_symlink(tmp: Path) -> list[str]:
    b = tmp / "bundle"
    b.mkdir()
    (b / "SHA256SUMS").write_text("")
    (b / "model_x86-avx2.so").symlink_to("/bin/true")
    return ["verify", str(b)]


def _bad_key_file(tmp: Path, option: str) -> list[str]:
    (tmp / "key.pem").write_text("not a key\n")
    if option == "--key":
        return ["package", str(_fake_run(tmp)), "--target", "x86-avx2", "--key", str(tmp / "key.pem")]
    return ["verify", str(tmp), "--trusted-key", str(tmp / "key.pem")]


def _full_disk(tmp: Path) -> list[str]:
    (tmp / "full").mkdir()
    return ["compile", str(_onnx_model(tmp)), "--out", str(tmp / "full" / "model.so")]


def _mount_tiny_tmpfs(tmp: Path) -> list[str]:
    """Run the CLI in a user and mount namespace over a 12 KiB tmpfs at ``tmp/full``: a real
    ENOSPC, and nothing of it outlives the command."""
    return ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=12k tmpfs {tmp / "full"} && exec "$@"', "sh"]


VALID_TARGET_HEAD = "name = 't'\ndescription = 'd'\narch = 'x86_64'\n"

CASES: list[Case] = [
    Case("unknown target name", lambda t: ["build", "--target", "pi-zero", "--out", str(t / "run")], 2, ("unknown target 'pi-zero'", "x86-avx2")),
    Case("target TOML with a syntax error", lambda t: _target_file(t, "name = 'x\n"), 2, ("t.toml", "not valid TOML")),
    Case("target TOML with an unknown key", lambda t: _target_file(t, VALID_TARGET_HEAD + "colour = 'red'\n"), 2, ("t.toml", "colour", "unknown key")),
    Case("target TOML with a wrong type", lambda t: _target_file(t, "name = 't'\ndescription = 3\n"), 2, ("t.toml", "description", "expected str")),
    Case("target TOML naming an unknown TVM kind", lambda t: _target_file(t, VALID_TARGET_HEAD + "[tvm.target]\nkind = 'vulkan'\n[runner]\nkind = 'local'\n[int8]\ndot_product = 'avx2'\n"), 2, ("tvm.target.kind", "vulkan")),
    Case("recipe TOML with 16-bit weights", lambda t: _recipe_file(t, "name = 'r'\n[weights]\nbits = 16\n"), 2, ("r.toml", "weights.bits")),
    Case("recipe TOML with asymmetric weights", lambda t: _recipe_file(t, "name = 'r'\n[weights]\nsymmetric = false\n"), 2, ("weights.symmetric",)),
    Case("missing data path", lambda t: ["build", "--data", f"cifar10:{t / 'nowhere'}", "--out", str(t / "run")], 2, ("nowhere", "does not exist")),
    Case("unknown data set", lambda t: ["build", "--data", "mnist", "--out", str(t / "run")], 2, ("unknown data set 'mnist'",)),
    Case("empty image folder", _empty_folder, 2, ("imgs", "sub-directory per class")),
    Case("image folder of files that are not images", _folder_not_images, 2, ("not a readable image",)),
    Case("CIFAR-10 folder with wrong files", _cifar_wrong_files, 2, ("not a CIFAR-10 batch",)),
    Case("negative latency budget", lambda t: ["build", "--latency-budget", "-2ms", "--out", str(t / "run")], 2, ("--latency-budget", "positive")),
    Case("latency budget that is not a duration", lambda t: ["build", "--latency-budget", "fast", "--out", str(t / "run")], 2, ("--latency-budget",)),
    Case("zero rounds", lambda t: ["build", "--rounds", "0", "--out", str(t / "run")], 2, ("--rounds",)),
    Case("unknown --space mode", lambda t: ["build", "--space", "huge", "--out", str(t / "run")], 2, ("--space 'huge'", "evolve")),
    Case("unreachable farm tracker", lambda t: ["compile", str(_onnx_model(t)), "--tracker", "127.0.0.1:9", "--out", str(t / "o.so")], 1, ("127.0.0.1:9",)),
    Case("a listener that is not a TVM tracker at --tracker", _not_a_tracker, 1, ("not a TVM tracker",)),
    Case("target TOML with an mcpu LLVM does not know", _unknown_mcpu, 2, ("t.toml", "tvm.target.mcpu", "haswel", "haswell")),
    Case("build --resume of a run whose state.json is garbage", lambda t: ["build", "--out", str(_fake_run(t, **{"state.json": "{garbage"})), "--resume"], 2, ("state.json", "not valid JSON", "new --out")),
    Case("build --resume of a run whose state.json is not a run state", lambda t: ["build", "--out", str(_fake_run(t, **{"state.json": "[1, 2]"})), "--resume"], 2, ("state.json", "not an edgenas run state")),
    Case("report of a run whose state.json is garbage", lambda t: ["report", str(_fake_run(t, **{"state.json": "{garbage"}))], 2, ("state.json", "not valid JSON")),
    Case("report of a run whose manifest.json is garbage", lambda t: ["report", str(_fake_run(t, **{"manifest.json": "garbage"}))], 2, ("manifest.json", "not valid JSON", "--resume")),
    Case("report of a run whose op table is not a record", lambda t: ["report", str(_fake_run(t, **{"op_table.json": "[1, 2]"}))], 2, ("op_table.json", "not an edgenas record")),
    Case("report of a run with a truncated round record", lambda t: ["report", str(_fake_run(t, **{"rounds__r1__search.json": '{"type": "search_res'}))], 2, ("search.json", "not valid JSON")),
    Case("measure a run whose manifest.json is garbage", lambda t: ["measure", str(_fake_run(t, **{"manifest.json": "garbage"}))], 2, ("manifest.json", "not valid JSON")),
    Case("package over a folder that is not a bundle", _package_over_a_user_folder, 2, ("x86-avx2", "not an edgenas bundle")),
    Case("verify a bundle holding a symlink", _bundle_with_a_symlink, 1, ("model_x86-avx2.so", "symlink")),
    Case("package --key with a file that is not a key", lambda t: _bad_key_file(t, "--key"), 2, ("key.pem", "not an unencrypted PEM private key")),
    Case("verify --trusted-key with a file that is not a key", lambda t: _bad_key_file(t, "--trusted-key"), 2, ("key.pem", "not a PEM public key")),
    Case("compile onto a full disk", _full_disk, 1, ("model.so", "No space left on device", "MiB free"), wrap=_mount_tiny_tmpfs),
    Case("unknown option", lambda t: ["build", "--turbo", "--out", str(t / "run")], 2, ("No such option", "--turbo")),
    Case("--out that holds other files", _non_empty_out, 2, ("not empty",)),
    Case("truncated ONNX file", _truncated, 2, ("truncated.onnx", "not a valid ONNX")),
    Case("text file named .onnx", _text_as_onnx, 2, ("notes.onnx", "not a valid ONNX")),
    Case("ONNX with an op TVM cannot import", _unsupported_op, 2, ("Det",)),
    Case("ONNX with a custom-domain op", _custom_domain, 2, ("com.example",)),
    Case("ONNX with a dynamic batch dimension", _dynamic_batch, 2, ("N",)),
    Case("ONNX declaring an opset that does not exist", _future_opset, 2, ("Relu.onnx",)),
    Case("target whose cross compiler is missing", _missing_cross_compiler, 2, ("no-such-aarch64-g++", "apt-get install")),
]
