"""``edgenas farm status``: the keys and servers of a TVM RPC device farm."""

from __future__ import annotations

import typer

from .app import app, handled

farm_app = typer.Typer(help="Inspect a TVM RPC device farm (tracker + servers).", no_args_is_help=True)
app.add_typer(farm_app, name="farm")


@farm_app.command("status")
@handled
def farm_status_cmd(tracker: str = typer.Option(..., "--tracker", help="Tracker HOST:PORT.")):
    """Keys on the tracker with their free/busy servers and queued requests."""
    from ..measure.farm_status import farm_status
    from .view import out, status_table

    out.print(status_table(farm_status(tracker)))
