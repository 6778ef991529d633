"""The worker's HTTP API: /metrics, /health, /stats, a user's recommendations and interest (answered
by the worker that owns the user's partition), and /state/digest."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import faust
from faust.web import Request, Response, View

from streams.core.batch import Ranked
from streams.core.state import UserState
from streams.kafka.topics import ITEMS
from streams.worker.context import WorkerContext
from streams.worker.control import ModelControl
from streams.worker.routing import Handler, owner_route, unavailable
from streams.worker.tablescan import digest


class Refused(Exception):
    """A request answered with an error status and a message."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error

    def response(self, view: View) -> Response:
        if self.status == 503:
            return unavailable(view, self.error)
        return view.json({"error": self.error, "status": self.status}, status=self.status)


class WorkerViews:
    def __init__(self, ctx: WorkerContext, control: ModelControl) -> None:
        self.ctx, self.control = ctx, control

    def register(self, app: faust.App) -> None:
        by_owner = owner_route(app, self.ctx.table, "user_id")
        routes: dict[str, Handler] = {"/metrics": self.metrics, "/health": self.health, "/stats": self.stats,
                                      "/users/{user_id}/recommendations": by_owner(self.recommendations),
                                      "/users/{user_id}/interest": by_owner(self.interest),
                                      "/state/digest": self.digest}
        for path, handler in routes.items():
            app.page(path)(_view(handler))

    async def metrics(self, view: View, request: Request) -> Response:
        body, content_type = self.ctx.metrics.exposition()
        return view.bytes(body, headers={"Content-Type": content_type})  # aiohttp rejects a charset in content_type

    async def health(self, view: View, request: Request) -> Response:
        app, processor = self.ctx.app, self.ctx.processor
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()) if app.consumer else []
        ready = bool(assigned) and not app.rebalancing and not app.in_recovery
        store = processor.vectors.status()
        status = "starting" if not ready else "ok" if store["up"] else "degraded"  # consuming, lists withheld
        return view.json({"status": status, "ready": ready, "assigned": assigned, "vector_store": store,
                          "model_version": processor.encoder.model_version, **self.control.status(),
                          "users": self.ctx.size.users},
                         status=200 if ready else 503)

    async def stats(self, view: View, request: Request) -> Response:
        # next_offsets: where each event partition stands; one that stops moving while others do is stalled
        ctx = self.ctx
        return view.json({**ctx.stats.as_json(), "users": ctx.size.users, "items": len(ctx.processor.catalog),
                          "quality": ctx.monitor.summary(),
                          "next_offsets": {f"{tp.topic}:{tp.partition}": n
                                           for tp, n in sorted(ctx.continuity.expected.items()) if tp.topic != ITEMS}})

    async def recommendations(self, view: View, request: Request, user_id: str) -> Response:
        _, scen, ranked = await self.ranked_for(request, user_id)
        processor = self.ctx.processor
        return view.json({"user_id": user_id, "scenario": scen, "model_version": processor.encoder.model_version,
                          "items": [{"item_id": i, "score": round(s, 5), "title": processor.catalog.titles.get(i, "")}
                                    for i, s in ranked.items]})

    async def interest(self, view: View, request: Request, user_id: str) -> Response:
        state, scen, ranked = await self.ranked_for(request, user_id)
        processor = self.ctx.processor
        counts = [None, *state.views.count.tolist()]  # the transformer view has no count of its own
        return view.json({
            "user_id": user_id, "scenario": scen, "events_applied": state.applied, "events_skipped": state.skipped,
            "recent_items": [{"item_id": i, "ts": int(r["ts"]), "title": processor.catalog.titles.get(i, "")}
                             for i, r in zip(state.items, state.ring, strict=True)][::-1],
            "views": {n: {"weight": round(float(w), 5), "events": c} for n, w, c in
                      zip(processor.encoder.view_names, ranked.weights, counts, strict=True)},
            "fused": [round(float(x), 5) for x in ranked.fused],
        })

    async def digest(self, view: View, request: Request) -> Response:
        """Hashes over this worker's user states, to compare runs (streams/worker/tablescan.py)."""
        return view.json(await asyncio.to_thread(digest, self.ctx.table, self.ctx.processor.load_state))

    async def ranked_for(self, request: Request, user_id: str) -> tuple[UserState, str, Ranked]:
        """The user's state, the target scenario and a fresh ranking; raises Refused."""
        ctx = self.ctx
        raw = ctx.table.get(user_id.encode())
        if raw is None:
            raise Refused(404, f"no events for user {user_id!r}")
        state = ctx.processor.load_state(raw)
        scen = request.query.get("scenario")
        if scen is None:
            scen = ctx.processor.latest_scenario(state)
        if scen not in ctx.processor.scen_index:
            raise Refused(400, f"unknown scenario {scen!r}")
        with ctx.admission.slot() as admitted:
            if not admitted:
                self.ctx.metrics.http_rejected.inc()
                raise Refused(503, f"{ctx.settings.http_queue} requests are waiting for this worker; retry shortly")
            [ranked] = await ctx.offload(ctx.processor.rank, [(user_id, state, scen)], False)
        if ranked is None:
            raise Refused(503, "the vector store is unavailable; retry shortly")
        return state, scen, ranked


def _view(handler: Handler) -> Handler:
    """`handler` as a Faust page function (a view's `get`), named after it; a `Refused` it raises
    becomes its error response."""

    @functools.wraps(handler)
    async def get(view: View, request: Request, **match: Any) -> Response:
        try:
            return await handler(view, request, **match)
        except Refused as e:
            return e.response(view)

    return get
