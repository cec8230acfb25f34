"""The Celery task that trains one run: claim it, train it, record how it ended.

Torch and the training loop are imported inside the worker's pool processes,
after fork, so the main process never touches CUDA.

A warm shutdown (SIGTERM) waits for running tasks, which for a training run
takes hours. So the main process raises a flag in shared memory when shutdown
starts, each training stops after its current step and writes a checkpoint,
and its run goes back to queued for the next worker, which resumes from that
checkpoint.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from celery.exceptions import Reject
from celery.signals import worker_process_init, worker_shutting_down
from kombu.exceptions import KombuError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from biaslab.artifacts import delete_run_artifacts
from biaslab.design import RunSpec
from biaslab.queue import TRAIN_RUN_TASK, queue_of
from biaslab.settings import Settings
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.models import RunStatus
from biaslab.store.retry import StoreUnavailable, with_retry
from biaslab.store.runs import (
    claim_run,
    discard_results_after,
    finish_run,
    release_run,
    runs_waiting_for_slot,
    was_claimed_before,
)
from biaslab.store.workers import set_current_run
from worker.lease_keeper import LeaseKeeper
from worker.store_callbacks import StoreCallbacks, checkpoint_relative_path

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from biaslab.training.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

# The error shown to the user is one line of at most this many characters;
# the full traceback goes to the worker's log.
ERROR_MAX_CHARS = 500


class RunLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefix every line with the run and study ids."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"run {extra['run_id']} study {extra['study_id']}: {msg}", kwargs


@dataclass(frozen=True)
class ProcessResources:
    """Resources that one pool process builds once and keeps for all the runs it trains."""

    pid: int
    sessions: sessionmaker[Session]
    device: torch.device


@dataclass(frozen=True)
class AttemptEnd:
    """The follow-up to an attempt: whether to send the run again and the waiting runs."""

    requeue: bool = False
    # (run id, queue) of the owner's runs that waited for the slot this run freed.
    waiting: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    """The end of one training attempt; status queued means the run was released unfinished."""

    status: RunStatus
    error: str | None = None
    step: int | None = None


class RunTrainer:
    """Train runs in one worker process, building the engine and device after fork."""

    def __init__(self, settings: Settings, shutdown_requested: Callable[[], bool]) -> None:
        self._settings = settings
        self._shutdown_requested = shutdown_requested
        self._resources: ProcessResources | None = None

    def resources(self) -> ProcessResources:
        # A forked child inherits the parent's object, so a new pid builds its own.
        if self._resources is None or self._resources.pid != os.getpid():
            self._resources = self._build_resources()
        return self._resources

    def _build_resources(self) -> ProcessResources:
        from biaslab.training.device import keep_freed_memory, select_device, set_torch_threads

        # Keeping freed activation memory mapped makes CPU training steps 25-45% faster here.
        keep_freed_memory()
        set_torch_threads(self._settings.torch_threads)
        device = select_device(self._settings.device)
        engine = make_engine(self._settings.resolved_database_url)
        logger.info("pool process %d ready: device %s", os.getpid(), device)
        return ProcessResources(pid=os.getpid(), sessions=make_sessionmaker(engine), device=device)

    def train(self, run_id: int, owner: str, worker_name: str | None = None) -> AttemptEnd:
        """Claim and train run `run_id` under the lease `owner`, then record how it ended.

        `worker_name` is the Celery node name, under which the workers page shows
        the run. `requeue` of the result is True when the run went back to queued
        because the worker is shutting down.
        """
        resources = self.resources()

        def claim() -> tuple[int, dict[str, Any], bool, bool] | None:
            with session_scope(resources.sessions) as session:
                resumable = was_claimed_before(session, run_id)
                run = claim_run(
                    session,
                    run_id,
                    owner,
                    self._settings.lease_seconds,
                    str(resources.device),
                    socket.gethostname(),
                    max_in_flight=self._settings.max_runs_per_user,
                )
                if run is not None and worker_name is not None:
                    set_current_run(session, worker_name, run_id)
                if run is None:
                    return None
                return run.study_id, run.spec, run.cancel_requested, resumable

        claimed = with_retry(
            claim, f"claiming run {run_id}", self._settings.database_retry_seconds, logger
        )
        if claimed is None:
            logger.info(
                "run %s: not claimed (running under a live lease, ended, missing or "
                "waiting for its owner's limit); message ignored",
                run_id,
            )
            return AttemptEnd()

        study_id, spec_json, cancel_requested, resumable = claimed
        log = RunLog(logger, {"run_id": run_id, "study_id": study_id})
        log.info("claimed by %s on %s", owner, resources.device)
        # Renew the lease from the claim on, whatever the attempt is doing. The
        # keeper stops before the outcome is recorded, so no renewal races that write.
        lease = LeaseKeeper(
            resources.sessions,
            run_id,
            owner,
            self._settings.lease_seconds,
            self._settings.heartbeat_seconds,
            log,
        )
        lease.start()
        try:
            if cancel_requested:
                outcome = RunOutcome(RunStatus.cancelled, step=0)
            else:
                outcome = self._train_spec(
                    run_id, owner, spec_json, resources, log, resumable, lease
                )
        finally:
            lease.stop()
        recorded = self._record_outcome(resources, run_id, owner, outcome, log, worker_name)
        return AttemptEnd(
            requeue=recorded and outcome.status is RunStatus.queued,
            waiting=self._waiting_runs(resources, run_id) if recorded else (),
        )

    def _waiting_runs(
        self, resources: ProcessResources, run_id: int
    ) -> tuple[tuple[int, str], ...]:
        limit = self._settings.max_runs_per_user
        if limit is None:
            return ()
        try:
            with session_scope(resources.sessions) as session:
                waiting = runs_waiting_for_slot(session, run_id, limit)
        except SQLAlchemyError:
            logger.warning("run %s: finding runs that wait for its slot failed", run_id)
            return ()
        return tuple((waiting_id, queue_of(spec)) for waiting_id, spec in waiting)

    def _train_spec(
        self,
        run_id: int,
        owner: str,
        spec_json: dict[str, Any],
        resources: ProcessResources,
        log: RunLog,
        resumable: bool,
        lease: LeaseKeeper,
    ) -> RunOutcome:
        try:
            spec = RunSpec.model_validate(spec_json)
        except ValidationError as error:
            log.error("stored spec is invalid: %s", error)
            return RunOutcome(RunStatus.failed, error=f"invalid run spec: {_one_line(error)}")

        # Resume from the run's checkpoint, if an earlier attempt left one. Results
        # stored after its step are reported again, so they go first. A run never
        # claimed before made no files, so files at its path belong to a deleted run
        # whose id the database reused, and they go.
        checkpoint_path = self._settings.resolved_artifact_dir / checkpoint_relative_path(run_id)
        resume_from = None
        if resumable:
            resume_from = _load_resumable_checkpoint(checkpoint_path, spec, resources.device, log)
        elif delete_run_artifacts(self._settings.resolved_artifact_dir, [run_id]):
            log.warning("deleted the files that a deleted run with the same id left behind")

        def discard() -> None:
            with session_scope(resources.sessions) as session:
                discard_results_after(session, run_id, resume_from.step if resume_from else 0)

        try:
            with_retry(
                discard, "deleting results to replay", self._settings.database_retry_seconds, log
            )
        except StoreUnavailable as error:
            log.error("%s", error)
            return RunOutcome(RunStatus.failed, error=str(error))

        callbacks = StoreCallbacks(
            resources.sessions,
            run_id,
            owner,
            spec.training.steps,
            self._settings.resolved_artifact_dir,
            self._settings.lease_seconds,
            self._settings.heartbeat_seconds,
            log,
            lease,
            shutdown_requested=self._shutdown_requested,
            database_retry_seconds=self._settings.database_retry_seconds,
        )
        from biaslab.training.loop import TrainingDivergedError, train

        try:
            # NOTE: a worker that lost its lease also writes a checkpoint when it
            # stops, at the first step after it notices the loss. Training is
            # deterministic, so that checkpoint matches the new owner's results up
            # to its step on the same device type, but it can move the new owner's
            # resume point back.
            result = train(spec, callbacks, resources.device, checkpoint_path, resume_from)
        except TrainingDivergedError as error:
            # A diverged run is an outcome of its design (too high a learning
            # rate, say), not a fault of the worker, so no traceback.
            log.warning("training failed: %s", error)
            return RunOutcome(RunStatus.failed, error=str(error))
        except Exception as error:  # any failure of the model or data ends the run as failed
            log.exception("training failed")
            return RunOutcome(RunStatus.failed, error=_one_line(error))
        if callbacks.stopped_for_shutdown:
            return RunOutcome(RunStatus.queued, step=result.step)
        status = RunStatus.cancelled if result.stopped else RunStatus.succeeded
        return RunOutcome(status, step=result.step)

    def _record_outcome(
        self,
        resources: ProcessResources,
        run_id: int,
        owner: str,
        outcome: RunOutcome,
        log: RunLog,
        worker_name: str | None = None,
    ) -> bool:
        def record() -> bool:
            with session_scope(resources.sessions) as session:
                if worker_name is not None:
                    set_current_run(session, worker_name, None)
                if outcome.status is RunStatus.queued:
                    return release_run(session, run_id, owner)
                return finish_run(
                    session,
                    run_id,
                    owner,
                    outcome.status,
                    error=outcome.error,
                    step=outcome.step,
                )

        try:
            recorded = with_retry(
                record,
                f"recording the run as {outcome.status.value}",
                self._settings.database_retry_seconds,
                log,
            )
        except (SQLAlchemyError, StoreUnavailable):
            log.exception(
                "recording %s failed; the run is sent again once its lease expires",
                outcome.status.value,
            )
            return False
        ended = "queued again" if outcome.status is RunStatus.queued else outcome.status.value
        if recorded and outcome.step is None:
            log.info("%s", ended)
        elif recorded:
            log.info("%s at step %d", ended, outcome.step)
        else:
            log.warning("recording %s rejected: lease %s was lost to another worker", ended, owner)
        return recorded


def _load_resumable_checkpoint(
    path: Path, spec: RunSpec, device: torch.device, log: RunLog
) -> Checkpoint | None:
    """Return the checkpoint at `path` when the run can resume from it, else None."""
    from biaslab.training.checkpoint import CheckpointError, load_checkpoint

    try:
        checkpoint = load_checkpoint(path)
        checkpoint.check_resumable(spec, device)
    except FileNotFoundError:
        return None
    except CheckpointError as error:
        log.warning("starting from step 0, because the checkpoint is not usable: %s", error)
        return None
    log.info("resuming from the checkpoint at step %d", checkpoint.step)
    return checkpoint


def _one_line(error: BaseException) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if len(text) > ERROR_MAX_CHARS:
        text = text[: ERROR_MAX_CHARS - 3] + "..."
    return text


def register_tasks(app: Celery, settings: Settings) -> None:
    """Register the train-run task on `app`, bound to `settings`, and the shutdown flag."""
    # Shared memory made before the pool forks: the main process sets it, the
    # pool processes read it after every step. A plain byte needs no lock
    # that a signal handler could wait on.
    shutdown_flag = multiprocessing.RawValue("b", 0)
    trainer = RunTrainer(settings, shutdown_requested=lambda: bool(shutdown_flag.value))

    @app.task(name=TRAIN_RUN_TASK, bind=True)
    def train_run(task: Task, run_id: int) -> None:
        if shutdown_flag.value:
            # The consumer may still deliver for a moment after shutdown starts;
            # Celery logs the rejection with the run id in the task's arguments.
            raise Reject("worker is shutting down", requeue=True)

        owner = f"{socket.gethostname()}:{os.getpid()}:{task.request.id}"
        end = trainer.train(run_id, owner, task.request.hostname)
        to_send = list(end.waiting)
        if end.requeue:
            # This message is acknowledged when the task returns, so the
            # released run needs a new one on the queue it came from.
            delivery = task.request.delivery_info or {}
            to_send.append((run_id, delivery.get("routing_key") or app.conf.task_default_queue))
        for send_id, queue in to_send:
            try:
                app.send_task(TRAIN_RUN_TASK, args=[send_id], queue=queue)
            except KombuError:
                logger.warning(
                    "run %s: sending it again failed; the sweep sends it later",
                    send_id,
                    exc_info=True,
                )

    def prepare_process(**_: Any) -> None:
        # Import torch and pick the device when the pool process starts, not
        # when its first run arrives. A failure here is retried by that run.
        try:
            trainer.resources()
        except RuntimeError:
            logger.exception("pool process %d could not prepare its device", os.getpid())

    def flag_shutdown(**_: Any) -> None:
        shutdown_flag.value = 1

    worker_process_init.connect(prepare_process, weak=False)
    worker_shutting_down.connect(flag_shutdown, weak=False)
