"""The typer app every command group registers on, the error handling, and ``main``.

Only typer is imported at module level: heavy modules (torch, tvm, rich tables) are imported
inside the commands so ``edgenas --help`` is instant. Every ``EdgenasError`` ends as one line on
stderr (exit 2 for usage errors, 1 for failures); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import sys

import typer

app = typer.Typer(
    help="Co-optimise a neural architecture and its INT8 quantization for a named edge device, "
    "compile it with Apache TVM and measure it on the device.\n\n"
    "Start with:  edgenas build --target x86-avx2   (digits data, this CPU)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(ctx: typer.Context, debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    import warnings

    ctx.obj = {"debug": debug}
    if not debug:  # library chatter (brevitas' optional kernels, torch.onnx deprecations) is not for users
        for module in ("brevitas", "torch", "onnxscript"):
            warnings.filterwarnings("ignore", module=module)


def handled(fn):
    """Turn errors into one readable line and an exit code (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import EdgenasError

        debug = "--debug" in sys.argv
        try:
            return fn(*args, **kwargs)
        except EdgenasError as e:
            if debug:
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            typer.echo("interrupted: finished stages are kept; rerun with --resume to continue", err=True)
            raise typer.Exit(130)
        except typer.Exit:
            raise
        except Exception as e:  # noqa: BLE001 - last resort: still one line
            if debug:
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            typer.echo(f"error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", err=True)
            raise typer.Exit(1)

    return wrapper


def main() -> None:
    """Run the app; click's own usage errors (unknown option, bad value) become one line, exit 2."""
    try:  # typer >= 0.20 vendors click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as cx

    try:
        rv = app(standalone_mode=False)
    except cx.UsageError as e:
        if e.format_message().strip():  # empty for "no arguments: help was shown"
            cmd = e.ctx.command_path if e.ctx else "edgenas"
            typer.echo(f"error: {e.format_message()} (see `{cmd} --help`)", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted: finished stages are kept; rerun with --resume to continue", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(getattr(e, "exit_code", 1))
    sys.exit(rv if isinstance(rv, int) else 0)
