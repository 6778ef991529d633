"""Model hot swap: a version announced on iu.models is loaded beside the one served, its vector space
filled, and handed to the processor between two micro-batches.

1. Prepare (off the event loop): load the model and write its trained items and every published item
   (cold ones projected from their text by the new model) into its own collections, in a thread;
   write every user this worker holds, re-encoded from the state's ring, in chunks on the compute
   thread between micro-batches (a shadow model being promoted is in their use too), with progress in
   `iu_model_rollout_progress` and `/health`. Meanwhile the processor records the users its batches
   change.
2. Switch (under the batch lock, so no batch is in flight): the users changed since step 1 read them
   are written again, then the processor serves the new model. No event is consumed by either model
   twice or by neither: a batch runs wholly before or wholly after. States the old model wrote are moved
   into the new space as they are next read (`Processor.load_state`).
3. The aliases `items` and `user_interests` move to the new version; the old version's collections are
   dropped after IU_MODEL_GRACE_S, unless it is live again by then (a rollback).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from streams.kafka.control import Deployment
from streams.vectors.store import drop_version
from streams.worker.context import WorkerContext
from streams.worker.processor import Processor
from streams.worker.runtime import load_beside
from streams.worker.tablescan import pairs

log = logging.getLogger(__name__)

BACKFILL_CHUNK = 512  # users re-encoded and written per step
RETRY_S = 10.0  # after a failed preparation, before the next try


@dataclass
class Progress:
    """What `/health` and `iu model status` show of a rollout."""

    version: str
    phase: str = "loading"  # loading, backfilling, switching, failed
    users_done: int = 0
    users_total: int = 0
    error: str = ""

    def as_json(self) -> dict:
        return {"version": self.version, "phase": self.phase, "users_done": self.users_done,
                "users_total": self.users_total, **({"error": self.error} if self.error else {})}


class Rollout:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.progress: Progress | None = None
        self.task: asyncio.Task | None = None
        self.retry_at = 0.0
        self.drops: set[asyncio.Task] = set()
        self.switched_at = float("-inf")  # loop time of the last switch

    @property
    def serving(self) -> str:
        return self.ctx.processor.encoder.model_version

    def status(self) -> dict | None:
        return self.progress.as_json() if self.progress else None

    def follow(self, wanted: Deployment | None) -> None:
        """The live version announced: prepared and switched to when it is not the one served; a
        failed preparation is tried again after RETRY_S."""
        if wanted is None or wanted.version == self.serving:
            self._stop()
            return
        if self.progress is not None and self.progress.version == wanted.version and (
                self.progress.phase != "failed" or asyncio.get_running_loop().time() < self.retry_at):
            return
        self._stop()
        self.progress = Progress(wanted.version)
        self.task = asyncio.create_task(self._roll_out(wanted, self.progress))

    def _stop(self) -> None:
        """No rollout: the one under way (for a version no longer announced) is abandoned."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task, self.progress = None, None
        self.ctx.processor.touched = None
        self.ctx.metrics.rollout_progress.set(1)

    async def _roll_out(self, target: Deployment, progress: Progress) -> None:
        ctx = self.ctx
        try:
            new = await self._prepare(target, progress)
            progress.phase = "switching"
            old = await self._switch(new)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a model that does not load, Milvus down, ...: reported, and tried again
            log.exception("model %s: rollout failed", target.version)
            progress.phase, progress.error = "failed", f"{type(e).__name__}: {e}"[:300]
            self.retry_at = asyncio.get_running_loop().time() + RETRY_S
            ctx.metrics.rollouts.labels("failed").inc()
            ctx.processor.touched = None
            return
        self.progress = None
        self.switched_at = asyncio.get_running_loop().time()
        ctx.metrics.rollouts.labels("switched").inc()
        ctx.metrics.rollout_progress.set(1)
        log.warning("model %s serves now (was %s)", target.version, old)
        drop = asyncio.create_task(self._drop_later(old))
        self.drops.add(drop)  # held until done: the loop keeps only weak references to tasks
        drop.add_done_callback(self.drops.discard)

    async def _drop_later(self, version: str) -> None:
        """The collections of a version switched away from, after the grace period, unless it serves again."""
        await asyncio.sleep(self.ctx.settings.model_grace_s)
        if version != self.serving:
            dropped = await asyncio.to_thread(drop_version, self.ctx.processor.vectors.store.client, version)
            log.info("model %s: collections dropped: %s", version, dropped)

    async def _prepare(self, target: Deployment, progress: Progress) -> Processor:
        """The new version's processor, with every user this worker holds written by it."""
        ctx = self.ctx
        ctx.processor.touched = set()  # before the table is read: whatever changes after is written again
        challenger = ctx.processor.challenger  # a promoted shadow model is loaded and its items placed already
        if challenger is not None and challenger.encoder.model_version == target.version:
            new = challenger
        else:
            new = await load_beside(ctx, target)
        progress.phase = "backfilling"
        users = await asyncio.to_thread(pairs, ctx.table)
        progress.users_total = len(users)
        for k in range(0, len(users), BACKFILL_CHUNK):  # on the compute thread: a promoted shadow model is
            await ctx.offload(new.backfill, users[k:k + BACKFILL_CHUNK])  # also in the batches' use
            progress.users_done = min(k + BACKFILL_CHUNK, len(users))
            ctx.metrics.rollout_progress.set(progress.users_done / max(progress.users_total, 1))
        # users this worker was given meanwhile (a rebalance) are written now, still off the batch path
        done = {key for key, _ in users}
        await ctx.offload(new.backfill, [(key, raw) for key, raw in await asyncio.to_thread(pairs, ctx.table)
                                         if key not in done])
        return new

    async def _switch(self, new: Processor) -> str:
        """Between two batches: the users batches changed since they were read are written again, then
        the new model serves. Returns the version served before."""
        ctx = self.ctx
        processor = ctx.processor
        async with ctx.batch_lock:
            changed = [key.encode() for key in processor.touched or ()]
            await ctx.offload(new.backfill, [(key, ctx.table.get(key)) for key in changed])
            old = processor.encoder.model_version
            processor.serve(new)
            processor.touched = None
        await asyncio.to_thread(new.vectors.store.go_live)
        ctx.metrics.model.info(processor.model_labels())
        return old
