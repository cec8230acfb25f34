"""The `biaslab` command: serve the lab, run a worker, upgrade the database."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from biaslab.settings import Settings

app = typer.Typer(
    help="biaslab: probe the inductive bias of deep generative models.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

logger = logging.getLogger("biaslab.cli")

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder for the embedded database, broker and artifacts (env BIASLAB_DATA_DIR).",
        file_okay=False,
    ),
]


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _settings(data_dir: Path | None) -> Settings:
    # Set the variable too, so that a worker started from here uses the same folder.
    if data_dir is not None:
        os.environ["BIASLAB_DATA_DIR"] = str(data_dir.resolve())
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8000,
    data_dir: DataDirOption = None,
    worker: Annotated[bool, typer.Option(help="Start an embedded worker beside the API.")] = True,
) -> None:
    """Serve the lab: the API and pages, and an embedded worker."""
    import uvicorn

    from backend.app import create_app
    from biaslab.store.migrate import upgrade

    _configure_logging()
    settings = _settings(data_dir)
    if settings.database_url is None:
        # The embedded database belongs to this lab alone, so it is brought up to date here.
        upgrade(settings.resolved_database_url)
    typer.echo(
        f"biaslab is serving on http://{host}:{port}/ (data in {settings.data_dir.resolve()})"
    )
    uvicorn.run(
        create_app(settings, embedded_worker=worker), host=host, port=port, log_level="info"
    )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def worker(ctx: typer.Context, data_dir: DataDirOption = None) -> None:
    """Run a Celery worker on the configured broker; extra options go to `python -m worker`."""
    _settings(data_dir)
    os.execv(sys.executable, [sys.executable, "-m", "worker", *ctx.args])


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDirOption = None) -> None:
    """Bring the database schema to the newest revision."""
    from biaslab.store.migrate import upgrade

    _configure_logging()
    settings = _settings(data_dir)
    upgrade(settings.resolved_database_url)
    typer.echo("database schema is up to date")


if __name__ == "__main__":
    app()
