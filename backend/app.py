"""The FastAPI application: routes, error handlers, static pages, per-process resources."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from backend.embedded_worker import WorkerSupervisor
from backend.errors import install_error_handlers
from backend.queue import RunQueue
from backend.routes import datasets, events, pages, probe, runs, studies
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker
from biaslab.store.migrate import check_current

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
        app.state.queue = RunQueue(settings)
        supervisor = WorkerSupervisor() if embedded_worker else None
        if supervisor is not None:
            supervisor.start()
        logger.info("API started on database %s", engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            if supervisor is not None:
                await supervisor.stop()
            app.state.queue.close()
            engine.dispose()

    app = FastAPI(
        title="biaslab",
        summary="Probe the inductive bias of deep generative models.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (studies, runs, datasets, probe, events, pages):
        app.include_router(module.router)
    app.mount("/static/vendor", StaticFiles(directory=pages.PLOTLY_DIR), name="vendor")
    app.mount("/static", StaticFiles(directory=pages.FRONTEND_DIR), name="static")
    return app
