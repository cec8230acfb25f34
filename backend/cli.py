"""The `biaslab` command: serve the lab, run a worker, upgrade the database, probe, users."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from biaslab.probes.samples import DEFAULT_DOT_RADIUS, DOT_RADIUS_RANGE
from biaslab.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from biaslab.families.probing import StudyDataset

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


# Seconds that `serve` waits for open requests and event streams on shutdown.
GRACEFUL_SHUTDOWN_SECONDS = 5


def _settings(data_dir: Path | None, *, create: bool = True) -> Settings:
    # Set the variable too, so that a worker started from here uses the same folder.
    # `create` makes the data folder when it is missing.
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
    if not create:
        return settings
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        typer.echo(
            f"error: cannot create the data folder {str(settings.data_dir)!r}: "
            f"{error.strerror}; pass --data-dir with a folder you can write to",
            err=True,
        )
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8000,
    data_dir: DataDirOption = None,
    worker: Annotated[bool, typer.Option(help="Start an embedded worker beside the API.")] = True,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth",
            help=(
                "Require a sign-in or an API token for every API request "
                "(env BIASLAB_AUTH=required); always needed off loopback."
            ),
        ),
    ] = False,
) -> None:
    """Serve the lab: the API and pages, and an embedded worker."""
    import uvicorn

    from backend.app import create_app
    from backend.security.exposure import bind_address, open_lab_error, url_of
    from biaslab.store.migrate import upgrade

    _configure_logging()
    settings = _settings(data_dir)
    if auth:
        settings = settings.model_copy(update={"auth": "required"})
    exposure_error = open_lab_error(host, settings.auth)
    if exposure_error is not None:
        typer.echo(f"error: {exposure_error}", err=True)
        raise typer.Exit(2)
    try:
        address = bind_address(host, port)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if settings.database_url is None:
        # The embedded database belongs to this lab alone, so it is brought up to date here.
        upgrade(settings.resolved_database_url)
    typer.echo(
        f"biaslab is serving on {url_of(address, port)} (data in {settings.data_dir.resolve()})"
    )
    uvicorn.run(
        create_app(settings, embedded_worker=worker),
        host=address,
        port=port,
        log_level="info",
        # Open event streams never end by themselves, so shutdown closes them after this.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
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


# Usage errors exit with 2 in click, so a file that cannot be probed does too.
PROBE_ERROR_EXIT_CODE = 2


def _probe_error(where: object, message: object) -> typer.Exit:
    typer.echo(f"error: {where}: {message}", err=True)
    return typer.Exit(PROBE_ERROR_EXIT_CODE)


def _study_dataset(study_id: int, data_dir: Path | None) -> StudyDataset:
    """Read a study's dataset design from the lab's database; exit 2 when that fails."""
    from backend.routes.probe import StudyNotFound, load_study_dataset
    from biaslab.store.db import make_engine, make_sessionmaker
    from biaslab.store.migrate import check_current

    settings = _settings(data_dir, create=False)
    database = make_url(settings.resolved_database_url).database or ""
    if settings.database_url is None and not Path(database).is_file():
        raise _probe_error(
            "--study-id",
            f"no lab database at {database}; run the command in the folder where the lab "
            "runs, or name the lab's data folder with --data-dir or BIASLAB_DATA_DIR",
        )
    engine = make_engine(settings.resolved_database_url)
    try:
        check_current(settings.resolved_database_url)
        return load_study_dataset(make_sessionmaker(engine), study_id)
    except (StudyNotFound, RuntimeError) as error:
        raise _probe_error("--study-id", error) from error
    except OperationalError as error:
        url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        message = f"cannot reach the database at {url}: {error.orig}"
        raise _probe_error("--study-id", message) from error
    finally:
        engine.dispose()


@app.command()
def probe(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="An .npz or .npy of images, or a .zip of PNG images."),
    ],
    family: Annotated[
        str | None,
        typer.Option(
            help="The dataset family to probe for: the study's family with --study-id, else dots."
        ),
    ] = None,
    study_id: Annotated[
        int | None,
        typer.Option(
            help="A study of this lab's database to probe and score against; required "
            "for families that compare samples with a training set.",
            min=1,
        ),
    ] = None,
    dot_radius: Annotated[
        float | None,
        typer.Option(
            help=f"For dots without a study: dot radius as a fraction of the image width, "
            f"{DOT_RADIUS_RANGE[0]} to {DOT_RADIUS_RANGE[1]} [default: {DEFAULT_DOT_RADIUS}].",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the same JSON as POST /api/probe.")
    ] = False,
) -> None:
    """Read the features of samples made elsewhere and print a histogram of each."""
    from backend.routes.probe import probe_public
    from biaslab.families.probing import probe_design, probe_images
    from biaslab.probes.samples import InvalidSamples, load_samples_file

    study = _study_dataset(study_id, data_dir) if study_id is not None else None
    options = {"file": file, "family": "--family", "study_id": "--study-id"}
    try:
        design = probe_design(family, study, dot_radius)
        samples = load_samples_file(file)
        outcome = probe_images(samples.images, design)
    except InvalidSamples as error:
        raise _probe_error(options.get(error.field, "--dot-radius"), error) from error
    except ValueError as error:
        raise _probe_error(file, error) from error
    except OSError as error:
        raise _probe_error(file, error.strerror or error) from error

    public = probe_public(samples, outcome, study_id)
    if json_output:
        typer.echo(public.model_dump_json())
        return
    height, width = public.image_size
    source = public.source
    stored = f"{source.format}, {source.dtype}, {source.layout}"
    if source.array is not None:
        stored = f"{source.format} array {source.array!r}, {source.dtype}, {source.layout}"
    typer.echo(f"{public.n_images} images of {height}x{width} ({stored})")
    titles = {feature.name: feature.title for feature in outcome.features}
    for name, histogram in public.histograms.items():
        if len(public.histograms) > 1:
            typer.echo(f"\n{titles.get(name, name)}")
        typer.echo(f"{name:>12}  {'number':>7}  {'share':>6}")
        for label, number in zip(histogram.labels, histogram.counts, strict=True):
            if number:
                typer.echo(f"{label:>12}  {number:>7}  {number / histogram.total:>6.1%}")
        unrecognized = histogram.unrecognized
        share = histogram.unrecognized_share
        typer.echo(f"{'unrecognized':>12}  {unrecognized:>7}  {share:>6.1%}")
    for name, value in public.scores.items():
        typer.echo(f"{name}: {'undefined' if value is None else f'{value:.4g}'}")


# ---- Users ----

users_app = typer.Typer(
    help="Users and their API tokens, for a lab served with --auth.", no_args_is_help=True
)
app.add_typer(users_app, name="users")

UserNameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The user name.")]
TokenNameOption = Annotated[
    str, typer.Option("--token-name", help="A name for the API token, to tell tokens apart.")
]
# Usage errors exit with 2 in click; so do invalid names, passwords and databases.
USERS_ERROR_EXIT_CODE = 2


@contextmanager
def _user_store(data_dir: Path | None) -> Iterator[Session]:
    """Open a session on the lab's database, committed at the end, as `serve` would find it."""
    from biaslab.store.db import make_engine, make_sessionmaker, session_scope
    from biaslab.store.migrate import check_current, upgrade

    settings = _settings(data_dir)
    url = settings.resolved_database_url
    try:
        if settings.database_url is None:
            # The embedded database belongs to this lab alone, as in `serve`.
            upgrade(url)
        else:
            check_current(url)
    except OperationalError as error:
        safe_url = make_url(url).render_as_string(hide_password=True)
        typer.echo(f"error: cannot reach the database at {safe_url}: {error.orig}", err=True)
        raise typer.Exit(USERS_ERROR_EXIT_CODE) from None
    except RuntimeError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(USERS_ERROR_EXIT_CODE) from None
    engine = make_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    try:
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    except typer.Abort:
        if sys.stdin.isatty():
            raise
        # The prompt found the end of a piped or empty stdin.
        _fail("no password given: run in a terminal, or pass --password-stdin or --no-password")
    return password


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USERS_ERROR_EXIT_CODE)


@users_app.command("create")
def users_create(
    name: UserNameArgument,
    admin: Annotated[
        bool,
        typer.Option("--admin", help="Let the user change every study and read the audit log."),
    ] = False,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
    no_password: Annotated[
        bool,
        typer.Option("--no-password", help="Create a user who signs in with API tokens only."),
    ] = False,
    token_name: TokenNameOption = "first token",
    data_dir: DataDirOption = None,
) -> None:
    """Create a user and print their first API token on the last line of the output."""
    from biaslab.auth import InvalidPassword, check_password_rules
    from biaslab.store.users import UserError, check_user_name, create_user, issue_token

    if password_stdin and no_password:
        _fail("--password-stdin and --no-password exclude each other; use one of them")
    try:
        check_user_name(name)
    except UserError as error:
        _fail(str(error))
    password = None if no_password else _read_password(password_stdin)
    try:
        if password is not None:
            check_password_rules(password)
        with _user_store(data_dir) as session:
            user = create_user(session, name, password, is_admin=admin)
            new = issue_token(session, user, token_name)
    except (UserError, InvalidPassword) as error:
        _fail(str(error))
    role = "admin" if admin else "user"
    sign_in = "API tokens only" if password is None else "password or API token"
    typer.echo(f"created {role} {name!r} (signs in with: {sign_in})")
    typer.echo(f"API token {token_name!r}, shown only now:")
    typer.echo(new.secret)


@users_app.command("list")
def users_list(data_dir: DataDirOption = None) -> None:
    """List the users with their role, state and API tokens in use."""
    from biaslab.store.users import list_tokens, list_users

    with _user_store(data_dir) as session:
        rows = []
        for user in list_users(session):
            active = [token for token in list_tokens(session, user.id) if token.revoked_at is None]
            used = [token.last_used_at for token in active if token.last_used_at is not None]
            rows.append(
                (
                    user.name,
                    "admin" if user.is_admin else "user",
                    "disabled" if user.disabled else "enabled",
                    "yes" if user.password_hash else "no",
                    str(len(active)),
                    f"{max(used):%Y-%m-%d %H:%M}" if used else "never",
                )
            )
    if not rows:
        typer.echo("no users yet; create one with `biaslab users create NAME --admin`")
        return
    header = ("name", "role", "state", "password", "tokens", "token last used (UTC)")
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    for row in (header, *rows):
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@users_app.command("token")
def users_token(
    name: UserNameArgument, token_name: TokenNameOption = "cli", data_dir: DataDirOption = None
) -> None:
    """Create a new API token for a user and print it on the last line; it is shown only once."""
    from biaslab.store.users import UserError, issue_token, require_user

    try:
        with _user_store(data_dir) as session:
            user = require_user(session, name)
            if user.disabled:
                raise UserError(f"user {name!r} is disabled; a token of theirs would not work")
            new = issue_token(session, user, token_name)
    except UserError as error:
        _fail(str(error))
    typer.echo(f"API token {token_name!r} for {name!r}, shown only now:")
    typer.echo(new.secret)


@users_app.command("disable")
def users_disable(name: UserNameArgument, data_dir: DataDirOption = None) -> None:
    """Disable a user: their sign-ins end and their API tokens stop working."""
    from biaslab.store.users import UserError, disable_user, require_user

    try:
        with _user_store(data_dir) as session:
            disable_user(session, require_user(session, name))
    except UserError as error:
        _fail(str(error))
    typer.echo(f"disabled {name!r}: their sign-ins ended and their API tokens stop working")


# ---- Study bundles ----

# Usage errors exit with 2 in click; so do missing studies and invalid bundles.
BUNDLE_ERROR_EXIT_CODE = 2


@app.command("export")
def export_command(
    study_id: Annotated[
        int, typer.Argument(metavar="STUDY_ID", help="The study to export.", min=1)
    ],
    out: Annotated[
        Path, typer.Argument(metavar="OUT.zip", help="The bundle file to write.", dir_okay=False)
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Write a study bundle: design, package versions, results as CSV and JSON, figures."""
    from backend.routes.export import study_bundle
    from biaslab.store.studies import get_study

    settings = _settings(data_dir)
    with _user_store(data_dir) as session:
        study = get_study(session, study_id)
        if study is None:
            typer.echo(f"error: study {study_id} not found", err=True)
            raise typer.Exit(BUNDLE_ERROR_EXIT_CODE)
        data = study_bundle(session, study, settings)
        runs = len(study.runs)
    try:
        out.write_bytes(data)
    except OSError as error:
        typer.echo(f"error: {out}: {error.strerror or error}", err=True)
        raise typer.Exit(BUNDLE_ERROR_EXIT_CODE) from None
    typer.echo(f"exported study {study_id} ({runs} runs) to {out} ({len(data):,} bytes)")


@app.command("import")
def import_command(
    bundle: Annotated[
        Path, typer.Argument(metavar="BUNDLE.zip", help="A bundle made by `biaslab export`.")
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Load a study bundle into this lab as a new study, marked as imported."""
    from biaslab.bundle import MAX_BUNDLE_BYTES, InvalidBundle, read_bundle
    from biaslab.store.bundles import import_bundle

    settings = _settings(data_dir)
    try:
        size = bundle.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise InvalidBundle(
                f"the bundle has {size:,} bytes, above the limit of {MAX_BUNDLE_BYTES:,} bytes"
            )
        checked = read_bundle(bundle.read_bytes())
    except InvalidBundle as error:
        typer.echo(f"error: {bundle}: {error}", err=True)
        raise typer.Exit(BUNDLE_ERROR_EXIT_CODE) from None
    except OSError as error:
        typer.echo(f"error: {bundle}: {error.strerror or error}", err=True)
        raise typer.Exit(BUNDLE_ERROR_EXIT_CODE) from None
    with _user_store(data_dir) as session:
        study = import_bundle(session, checked, settings.resolved_artifact_dir)
        session.flush()
        new_id, runs = study.id, len(study.runs)
    source = checked.export.study
    typer.echo(f"imported study {source.id} {source.name!r} as study {new_id} ({runs} runs)")


if __name__ == "__main__":
    app()
