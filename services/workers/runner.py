"""The job loop: a NATS queue-group consumer that runs each job as its own task.

nats-py runs one subscription's callbacks one at a time, so the callback only takes a concurrency
slot and spawns the job's task. When every slot is busy the callback waits, and further jobs stay
in this worker's pending queue until a slot frees up (backpressure rather than refusing work).

A ``Cancel`` on ``subjects.cancel(worker_id)`` stops that job's provider call; the job still sends
its result, with the usage counted so far. The gateway learns ``worker_id`` from the job's first
reply (``Reply.worker_id``), which is ``accepted`` only for a job still silent after the accept delay.

While a job runs, one ticker for the whole worker sends a heartbeat on each job that has been quiet
for half the heartbeat interval (so no job stays silent for a whole interval): a gateway that hears
nothing from a job for a few intervals knows its worker died, and fails over or ends the stream.
"""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common import subjects
from modelrouter.events.v1 import events_pb2
from workers.job import JobControl, JobExecutor
from workers.outcome import JobCancelledError, WorkerShutdownError

log = logging.getLogger(__name__)

# After the drain timeout, how long cancelled jobs get to send their results.
CANCEL_GRACE_S = 5.0


class JobRunner:
    def __init__(
        self,
        nc: NATS,
        executor: JobExecutor,
        *,
        worker_id: str,
        concurrency: int,
        jobs_subject: str = subjects.JOBS,
        queue: str = subjects.WORKERS_QUEUE,
    ) -> None:
        self._nc = nc
        self._executor = executor
        self._worker_id = worker_id
        self._jobs_subject = jobs_subject
        self._queue = queue
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, JobControl] = {}  # by request id, for Cancel
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs_sub: Subscription | None = None
        self._cancel_sub: Subscription | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def ready(self) -> bool:
        """Taking work: subscribed to jobs and connected."""
        return self._jobs_sub is not None and self._nc.is_connected

    async def start(self) -> None:
        # The cancel subscription first: by the time a gateway learns this worker's id (from a job's
        # first reply), its cancel subject is live.
        self._cancel_sub = await self._nc.subscribe(subjects.cancel(self._worker_id), cb=self._on_cancel)
        self._jobs_sub = await self._nc.subscribe(self._jobs_subject, queue=self._queue, cb=self._on_job)
        await self._nc.flush()
        self._ticker = asyncio.create_task(self._heartbeats(self._executor.heartbeat_s / 2), name="heartbeats")

    async def _heartbeats(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            for control in list(self._running.values()):
                if control.replies is not None:
                    try:
                        await control.replies.beat(tick_s)
                    except Exception:  # NATS reconnecting: the job's next reply or beat tries again
                        log.debug("heartbeat of %s not sent", control.job.request_id, exc_info=True)

    async def _on_job(self, msg: Msg) -> None:
        try:
            job = events_pb2.Job.FromString(msg.data)
        except DecodeError:
            log.error("dropping a malformed job on %s (%d bytes)", msg.subject, len(msg.data))
            return
        await self._slots.acquire()
        control = JobControl(job)
        task = asyncio.create_task(self._executor.run(control, msg.subject, msg.headers), name=f"job {job.request_id}")
        control.task = task
        self._running[job.request_id] = control
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(control, t))

    def _finished(self, control: JobControl, task: asyncio.Task[None]) -> None:
        self._slots.release()
        self._tasks.discard(task)
        # A retry of the same request may already run here under the same id; leave that one.
        if self._running.get(control.job.request_id) is control:
            del self._running[control.job.request_id]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("job %s ended without a result", control.job.request_id, exc_info=exc)

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            request_id = events_pb2.Cancel.FromString(msg.data).request_id
        except DecodeError:
            log.error("dropping a malformed cancel on %s", msg.subject)
            return
        control = self._running.get(request_id)
        if control is not None:
            control.stop(JobCancelledError("The request was cancelled."))

    async def drain(self, timeout_s: float) -> None:
        """Stop taking jobs, let those in flight finish for up to ``timeout_s``, then stop the rest
        (which still send their results)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        sub, self._jobs_sub = self._jobs_sub, None
        if sub is not None:
            try:  # jobs this worker already received still run; no new ones arrive
                await asyncio.wait_for(sub.drain(), timeout_s)
            except TimeoutError:
                log.warning("jobs still queued at this worker after %gs were dropped", timeout_s)
        if self._tasks:
            log.info("waiting up to %.1fs for %d jobs in flight", deadline - loop.time(), len(self._tasks))
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))
        if self._tasks:
            log.warning("stopping %d jobs still running after %gs", len(self._tasks), timeout_s)
            for control in list(self._running.values()):
                control.stop(WorkerShutdownError("The worker shut down before the upstream answered."))
            await asyncio.wait(set(self._tasks), timeout=CANCEL_GRACE_S)
        if self._cancel_sub is not None:
            await self._cancel_sub.unsubscribe()
            self._cancel_sub = None
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
