"""The worker's side of iu.models: read every second, the live version handed to the rollout, the
shadow version to the shadow run, and what this worker serves reported under its own key."""

from __future__ import annotations

import asyncio
import json
import logging

from streams.kafka.control import LIVE, SHADOW, WORKER, Deployment, TopicTail, announce
from streams.kafka.topics import MODELS
from streams.worker.context import WorkerContext
from streams.worker.rollout import Rollout
from streams.worker.shadow import ShadowRun

log = logging.getLogger(__name__)

CONTROL_INTERVAL_S = 1.0  # how often a worker reads iu.models
REPORT_S = 15.0  # a worker reports what it serves at least this often (`iu model status` shows its age)


class ModelControl:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.rollout, self.shadow = Rollout(ctx), ShadowRun(ctx)
        self.tail: TopicTail | None = None
        self.live: dict = {}  # the latest live record
        self.shadow_target: Deployment | None = None
        self.reported: tuple[float, str] = (float("-inf"), "")  # when, and what was said
        self.switch_seen = float("-inf")

    async def tick(self) -> None:
        if self.tail is None:
            self.tail = await asyncio.to_thread(TopicTail, self.ctx.bootstrap, MODELS)
        for key, value in await asyncio.to_thread(self.tail.new):
            if key.decode() == LIVE and value:
                self.live = json.loads(value)
            elif key.decode() == SHADOW and value:
                self.shadow_target = Deployment.from_json(json.loads(value))
        live = Deployment.from_json(self.live)
        self.rollout.follow(live)
        if self.rollout.switched_at > self.switch_seen:
            self.switch_seen = self.rollout.switched_at
            self.shadow.switched(self.live.get("reason", ""), self.switch_seen)
        await self.shadow.follow(self.shadow_target, self.rollout.serving)
        now = asyncio.get_running_loop().time()
        await self.shadow.apply_rules(live, Deployment.from_json(self.live.get("previous")), now)
        said = json.dumps([self.rollout.serving, self.rollout.status(), self._challenger()])
        if now - self.reported[0] > REPORT_S or said != self.reported[1]:
            await self.report(now, said)

    def _challenger(self) -> str | None:
        challenger = self.ctx.processor.challenger
        return challenger.encoder.model_version if challenger is not None else None

    def status(self) -> dict:
        """For /health: the rollout under way (or None) and the shadow model with its paired score."""
        shadow = self.ctx.monitor.quality.shadow
        return {"rollout": self.rollout.status(),
                "shadow": {**shadow.as_json(), "version": self._challenger()} if self._challenger() else None}

    async def report(self, now: float, said: str) -> None:
        """What this worker serves, on iu.models under its own key (`iu model status` reads them)."""
        ctx = self.ctx
        url = str(ctx.app.conf.canonical_url)
        record = {"url": url, "serving": self.rollout.serving, "path": ctx.processor.source, **self.status(),
                  "users": ctx.size.users}
        try:
            await asyncio.to_thread(announce, ctx.bootstrap, f"{WORKER}{url}", record)
        except Exception as e:  # a status line; the broker's trouble shows elsewhere
            log.warning("could not report the model status: %s", e)
            return
        self.reported = (now, said)
