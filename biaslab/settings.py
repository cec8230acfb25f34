"""One typed settings object shared by the API, the worker and the CLI.

Every field reads from a `BIASLAB_` environment variable (`BIASLAB_DATA_DIR`,
`BIASLAB_DATABASE_URL`, ...). Tests build `Settings(...)` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIASLAB_", extra="ignore")

    data_dir: Path = Field(
        default=Path("biaslab-data"),
        description="Folder for the embedded database, broker and artifacts.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite under data_dir when unset."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; an SQLite broker under data_dir when unset."
    )
    artifact_dir: Path | None = Field(
        default=None, description="Checkpoints and sample grids; data_dir/artifacts when unset."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Torch CPU threads per worker; all cores when unset.",
    )
    lease_seconds: float = Field(
        default=60.0, gt=0, description="How long a run's lease lives without a heartbeat."
    )
    max_runs_per_user: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description=(
            "Runs of one user that may train at once; more stay queued and say why. "
            "Unset: no limit. Studies made without authentication count as one user."
        ),
    )
    database_retry_seconds: float = Field(
        default=120.0,
        gt=0,
        le=24 * 3600,
        description=(
            "How long a worker retries a write while the database is unreachable "
            "before the run fails."
        ),
    )
    heartbeat_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often a training run renews its lease and checks for cancel.",
    )
    auth: Literal["off", "required"] = Field(
        default="off",
        description="`required`: every API request needs a signed-in user or an API token.",
    )
    session_hours: float = Field(
        default=168.0, gt=0, le=24 * 365, description="Lifetime of a browser sign-in, in hours."
    )
    secure_cookies: bool | None = Field(
        default=None,
        description=(
            "Mark the sign-in cookie Secure; unset: only when the request came over https."
        ),
    )
    sign_in_failures_per_user: int = Field(
        default=5, ge=1, description="Failed sign-ins allowed per user name within the window."
    )
    sign_in_failures_per_address: int = Field(
        default=20,
        ge=1,
        description="Failed sign-ins allowed per client address within the window.",
    )
    sign_in_window_seconds: float = Field(
        default=900.0, gt=0, description="Window of the failed sign-in limits, in seconds."
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'biaslab.sqlite').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    @property
    def uses_embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("sqla+")
