"""SQLAlchemy 2 tables of the store: studies, runs, snapshots, metrics, events, users, workers."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # Named constraints, so that later migrations can drop or alter them, on SQLite too.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled)


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    design: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # None for a study made while authentication was off. Users are disabled, not
    # deleted, so no ON DELETE action: the database rejects deleting an owner.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # A private study is visible to its owner and to admins only.
    private: Mapped[bool] = mapped_column(default=False)
    # The origin of an imported study (its bundle's manifest); None for a study made here.
    imported_from: Mapped[dict[str, Any] | None]

    runs: Mapped[list[Run]] = relationship(
        back_populates="study", order_by="Run.index", cascade="all, delete-orphan"
    )
    # Joined, because every response about a study names its owner.
    owner: Mapped[User | None] = relationship(lazy="joined")


class Run(Base):
    __tablename__ = "runs"

    # TODO: SQLite gives a new row the id of the newest deleted one, so studies
    # and runs reuse ids. `sqlite_autoincrement` prevents that, but existing
    # tables must be rebuilt to get it.
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(default=0)
    spec: Mapped[dict[str, Any]]
    status: Mapped[RunStatus] = mapped_column(
        Enum(RunStatus, native_enum=False, length=16), default=RunStatus.queued, index=True
    )
    step: Mapped[int] = mapped_column(default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    device: Mapped[str | None] = mapped_column(String(64))
    worker_host: Mapped[str | None] = mapped_column(String(255))
    # The lease: the worker holding a running run renews lease_expires_at by heartbeat.
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    # Histograms of the training set's features, on the same bins as the snapshots. None is
    # stored as SQL NULL, so `IS NULL` shows whether a run has them without reading the JSON.
    training_histograms: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Why a queued run is not training yet (its owner's limit of runs in flight); None otherwise.
    waiting_reason: Mapped[str | None] = mapped_column(String(500))

    study: Mapped[Study] = relationship(back_populates="runs")
    snapshots: Mapped[list[Snapshot]] = relationship(
        back_populates="run", order_by="Snapshot.step", cascade="all, delete-orphan"
    )


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("run_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    histograms: Mapped[dict[str, Any]]
    losses: Mapped[dict[str, Any]]
    # The dataset family's summary numbers of the probed samples, by name; null
    # for a non-finite value, and NULL in rows written before scores were stored.
    scores: Mapped[dict[str, Any] | None]
    # Path of the PNG sample grid, relative to the artifact folder.
    grid_path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="snapshots")


class Metric(Base):
    """One logged scalar (a loss term) of a run at a step."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "step", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class EventKind(enum.StrEnum):
    run = "run"
    snapshot = "snapshot"


class Event(Base):
    """A change sent to browsers over Server-Sent Events; its id is the SSE event id."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_study_id_id", "study_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[EventKind] = mapped_column(Enum(EventKind, native_enum=False, length=16))
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # An argon2 hash; None for a user who signs in with API tokens only.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A personal API token; only the SHA-256 digest of its secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the secret, shown in lists to tell tokens apart.
    display_prefix: Mapped[str] = mapped_column(String(16))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SignInSession(Base):
    """A browser sign-in; the cookie contains the secret, the store its SHA-256 digest."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    # Sent back in a header with every state-changing request made with this session's cookie.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEntry(Base):
    """One state-changing API request: who made it, what it asked, when, and the status sent."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    # No foreign keys: the entry outlives a deleted study or run.
    study_id: Mapped[int | None]
    run_id: Mapped[int | None]
    status: Mapped[int]
    client_address: Mapped[str | None] = mapped_column(String(64))
    # The user name that a sign-in tried when it identified no user; None otherwise.
    attempted_user: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship(lazy="joined")


class Worker(Base):
    """A worker process on the broker: what it consumes, what it trains, when it was last seen."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The Celery node name, such as "gpu0@lab-server"; unique among live workers.
    name: Mapped[str] = mapped_column(String(255), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    # The device it trains on, as the worker describes it ("cpu", "cuda:0 (NVIDIA H200)").
    device: Mapped[str] = mapped_column(String(255))
    # Comma-separated queue names, such as "gpu" or "cpu,gpu".
    queues: Mapped[str] = mapped_column(String(255))
    # A deleted run leaves the worker row in place.
    current_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
