"""The `biaslab` command: serve the lab, run a worker, upgrade the database, probe samples."""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from biaslab.probes.samples import DEFAULT_DOT_RADIUS, DOT_RADIUS_RANGE
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
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            variable = "BIASLAB_" + "_".join(str(part) for part in problem["loc"]).upper()
            typer.echo(
                f"error: {variable}={problem['input']!r} is invalid: {problem['msg']}", err=True
            )
        raise typer.Exit(2) from None
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
    try:
        upgrade(settings.resolved_database_url)
    except OperationalError as error:
        url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        typer.echo(f"error: cannot reach the database at {url}: {error.orig}", err=True)
        raise typer.Exit(2) from None
    typer.echo("database schema is up to date")


class ProbeFamily(StrEnum):
    dots = "dots"


# Usage errors exit with 2 in click, so a file that cannot be probed does too.
PROBE_ERROR_EXIT_CODE = 2


@app.command()
def probe(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="An .npz or .npy of images, or a .zip of PNG images."),
    ],
    family: Annotated[ProbeFamily, typer.Option(help="The dataset family to probe for.")],
    dot_radius: Annotated[
        float,
        typer.Option(
            help="Dot radius as a fraction of the image width.",
            min=DOT_RADIUS_RANGE[0],
            max=DOT_RADIUS_RANGE[1],
        ),
    ] = DEFAULT_DOT_RADIUS,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the same JSON as POST /api/probe.")
    ] = False,
) -> None:
    """Count the dots in samples made elsewhere and print the histogram of counts."""
    from backend.routes.probe import probe_public
    from biaslab.probes.samples import InvalidSamples, load_samples_file, probe_dots

    try:
        samples = load_samples_file(file)
        result = probe_dots(samples.images, dot_radius)
    except InvalidSamples as error:
        where = file if error.field == "file" else "--dot-radius"
        typer.echo(f"error: {where}: {error}", err=True)
        raise typer.Exit(PROBE_ERROR_EXIT_CODE) from error
    except OSError as error:
        typer.echo(f"error: {file}: {error.strerror or error}", err=True)
        raise typer.Exit(PROBE_ERROR_EXIT_CODE) from error

    public = probe_public(samples, result)
    if json_output:
        typer.echo(public.model_dump_json())
        return
    histogram = public.histograms["count"]
    height, width = public.image_size
    source = public.source
    stored = f"{source.format}, {source.dtype}, {source.layout}"
    if source.array is not None:
        stored = f"{source.format} array {source.array!r}, {source.dtype}, {source.layout}"
    typer.echo(f"{public.n_images} images of {height}x{width} ({stored})")
    typer.echo(f"{'count':>12}  {'number':>7}  {'share':>6}")
    last = len(histogram.counts) - 1
    for index, number in enumerate(histogram.counts):
        if number == 0:
            continue
        # Bin i contains the count i + 1, and the last bin also contains every larger count.
        label = f"{index + 1}+" if index == last else str(index + 1)
        typer.echo(f"{label:>12}  {number:>7}  {number / histogram.total:>6.1%}")
    typer.echo(
        f"{'unrecognized':>12}  {histogram.unrecognized:>7}  {histogram.unrecognized_share:>6.1%}"
    )


if __name__ == "__main__":
    app()
