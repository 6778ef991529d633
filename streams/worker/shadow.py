"""Champion/challenger: a shadow model announced on iu.models runs beside the live one.

For every list the live model emits, the shadow model ranks the same user at the same moment (its own
view of the user's ring, its own item table, nothing written to Milvus), and the online evaluation
scores both lists on the user's next event (streams/monitoring/quality.py, `Shadow`). Optional rules,
each worker applying them to its own users:
- IU_SHADOW_PROMOTE_TRIALS: once that many paired trials show the challenger hitting significantly more
  often (McNemar, p < PROMOTE_ALPHA), the worker announces it live (reason auto-promote).
- IU_ROLLBACK_WINDOW_S: within that long after a promotion the worker switched to, a downward detection
  of the hit-rate drift detector makes it announce the previous version live again (auto-rollback).
"""

from __future__ import annotations

import asyncio
import logging

from streams.kafka.control import PROMOTIONS, Deployment, announce_live
from streams.monitoring.quality import Shadow
from streams.worker.context import WorkerContext
from streams.worker.processor import Processor
from streams.worker.runtime import load_beside

log = logging.getLogger(__name__)

PROMOTE_ALPHA = 0.05


class ShadowRun:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.loading: asyncio.Task | None = None
        self.wanted: Deployment | None = None
        self.down_before = 0  # downward hit-rate detections when the watched promotion was switched to
        self.watching_since: float | None = None  # loop time of that switch; None: no rollback window open

    @property
    def challenger(self) -> Processor | None:
        return self.ctx.processor.challenger

    async def follow(self, wanted: Deployment | None, serving: str) -> None:
        """The shadow version announced: loaded beside the live one, or removed."""
        if wanted is not None and wanted.version == serving:
            wanted = None  # promoted: it serves now
        self.wanted = wanted
        current = self.challenger.encoder.model_version if self.challenger is not None else None
        if wanted is None and current is not None:
            async with self.ctx.batch_lock:
                self.ctx.processor.challenger = None
        if wanted is not None and wanted.version != current and (self.loading is None or self.loading.done()):
            self.loading = asyncio.create_task(self._load(wanted))

    async def _load(self, wanted: Deployment) -> None:
        ctx = self.ctx
        try:
            challenger = await load_beside(ctx, wanted)
        except Exception:
            log.exception("shadow model %s did not load", wanted.version)
            return
        if self.wanted == wanted:
            async with ctx.batch_lock:
                ctx.processor.challenger = challenger
            log.warning("shadow model %s runs beside %s", wanted.version, ctx.processor.encoder.model_version)

    def switched(self, reason: str, at: float) -> None:
        """The worker switched to a live version announced for `reason`: a promotion opens the window."""
        promoted = reason in PROMOTIONS and self.ctx.settings.rollback_window_s > 0
        self.watching_since = at if promoted else None
        self.down_before = self.ctx.monitor.detections["hit_rate:down"]

    async def apply_rules(self, live: Deployment | None, previous: Deployment | None, now: float) -> None:
        ctx, settings = self.ctx, self.ctx.settings
        shadow = ctx.monitor.quality.shadow
        if (self.wanted is not None and self.challenger is not None and shadow.version == self.wanted.version
                and promote_now(shadow, settings.shadow_promote_trials)):
            log.warning("promoting shadow model %s: %s", self.wanted.version, shadow.as_json())
            await asyncio.to_thread(announce_live, ctx.bootstrap, self.wanted, "auto-promote")
            self.wanted = None
        if self.watching_since is None:
            return
        downs = ctx.monitor.detections["hit_rate:down"] - self.down_before
        if now - self.watching_since > settings.rollback_window_s:
            self.watching_since = None
        elif roll_back_now(downs, now - self.watching_since, settings.rollback_window_s) and previous is not None:
            log.warning("rolling back to %s: the hit rate drifted down %.0f s after %s was promoted",
                        previous.version, now - self.watching_since, live.version if live else "?")
            await asyncio.to_thread(announce_live, ctx.bootstrap, previous, "auto-rollback")
            self.watching_since = None


def promote_now(shadow: Shadow, trials: int) -> bool:
    """IU_SHADOW_PROMOTE_TRIALS's rule: enough paired trials, and the challenger significantly better."""
    return bool(trials) and shadow.trials >= trials and shadow.better(PROMOTE_ALPHA)


def roll_back_now(downs: int, since_s: float, window_s: float) -> bool:
    """IU_ROLLBACK_WINDOW_S's rule: a downward hit-rate detection within the window after a promotion."""
    return bool(window_s) and downs > 0 and since_s <= window_s
