"""``edgenas targets list | show``: the device targets (``targets/*.toml``)."""

from __future__ import annotations

import typer

from .app import app, handled

targets_app = typer.Typer(help="List and inspect device targets (targets/*.toml).", no_args_is_help=True)
app.add_typer(targets_app, name="targets")


@targets_app.command("list")
@handled
def targets_list():
    """Show every target file with its TVM target, reachability and INT8 support."""
    from ..target import get_target, list_targets
    from .view import out as console, targets_table

    console.print(targets_table([get_target(n) for n in list_targets()]))


@targets_app.command("show")
@handled
def targets_show(name: str = typer.Argument(..., help="Target name or TOML path.")):
    """Show one target in full, including the TVM target TVM resolves it to."""
    from ..target import get_target
    from .view import kv_table, out as console

    s = get_target(name)
    rows = [("name", s.name), ("description", s.description), ("file", s.path), ("arch", s.arch),
            ("tvm target", str(s.tvm_target)), ("tvm host", str(s.tvm_host) if s.tvm_host else "-"),
            ("cross compiler", s.cross_compiler or "-"), ("runner", s.runner + (f" (key {s.rpc_key})" if s.rpc_key else "")),
            ("int8 dot product", s.int8_dot), ("search bits (default --bits)", ",".join(map(str, s.search_bits))),
            ("int8 weight bits (QAT cap)", str(s.int8_weight_bits)),
            ("int8 fused blocks (VNNI)", "on" if s.int8_fuse_blocks else "off")]
    console.print(kv_table(f"target {s.name}", rows))
