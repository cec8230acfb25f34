"""The FastAPI application: routes, error handlers, static pages, per-process resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from backend.embedded_worker import WorkerSupervisor
from backend.errors import install_error_handlers
from backend.event_feed import EventFeeds
from backend.queue import RunQueue
from backend.routes import (
    analysis,
    audit,
    compare,
    datasets,
    design,
    events,
    export,
    models,
    pages,
    presets,
    probe,
    run_count,
    runs,
    session,
    studies,
    templates,
    tokens,
    users,
    workers,
)
from backend.run_statics import RunStaticsCache
from backend.security.audit import AuditMiddleware
from backend.security.identity import authenticate
from biaslab.auth import SignInThrottle, ThrottleLimits
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import check_current
from biaslab.store.users import count_enabled_users

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, embedded_worker: bool = False) -> FastAPI:
    """Build the app; the database, broker and embedded worker start with it, not at import."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        check_current(url)
        engine = make_engine(url)
        app.state.settings = settings
        app.state.sessions = make_sessionmaker(engine)
        app.state.event_feeds = EventFeeds(app.state.sessions)
        app.state.run_statics = RunStaticsCache()
        if settings.auth == "required":
            with session_scope(app.state.sessions) as db:
                if count_enabled_users(db) == 0:
                    logger.warning(
                        "authentication is on but no user exists yet; "
                        "create one with `biaslab users create NAME --admin`"
                    )
        app.state.queue = RunQueue(settings)
        supervisor = WorkerSupervisor() if embedded_worker else None
        if supervisor is not None:
            supervisor.start()
        logger.info(
            "API started on database %s, authentication %s",
            engine.url.render_as_string(hide_password=True),
            settings.auth,
        )
        try:
            yield
        finally:
            await app.state.event_feeds.close()
            if supervisor is not None:
                await supervisor.stop()
            app.state.queue.close()
            engine.dispose()

    app = FastAPI(
        title="biaslab",
        summary="Probe the inductive bias of deep generative models.",
        version="0.1.0",
        lifespan=lifespan,
        # Every route checks credentials when authentication is on; see `authenticate`.
        dependencies=[Depends(authenticate)],
    )
    app.state.sign_in_throttle = SignInThrottle(
        ThrottleLimits(
            failures_per_user=settings.sign_in_failures_per_user,
            failures_per_address=settings.sign_in_failures_per_address,
            window_seconds=settings.sign_in_window_seconds,
        )
    )
    app.add_middleware(AuditMiddleware)
    install_error_handlers(app)
    for module in (studies, runs, datasets, design, models, presets, probe, events, pages):
        app.include_router(module.router)
    for module in (session, tokens, audit, users, workers):
        app.include_router(module.router)
    for module in (analysis, compare, templates, run_count, export):
        app.include_router(module.router)
    app.include_router(session.page_router)
    app.mount("/static/vendor", StaticFiles(directory=pages.PLOTLY_DIR), name="vendor")
    app.mount("/static", StaticFiles(directory=pages.FRONTEND_DIR), name="static")
    return app
