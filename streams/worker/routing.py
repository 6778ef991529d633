"""The HTTP views' guards: requests for a user go to the worker that owns the user's partition (one
hop at most, with only the headers the views read), and the owner's compute queue is bounded.

Faust's `table_route` forwards every header of the client's request (cookies and credentials
included) and forwards again whatever comes back to it, so two workers that disagree on an owner
during a rebalance would pass a request back and forth. Here a forwarded request carries
`HOP_HEADER`; a worker that receives one for a user it does not own answers 503 (retry) instead.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
import faust
from faust.web import Request, Response, View
from yarl import URL

HOP_HEADER = "iu-forwarded-by"
FORWARDED = ("accept",)  # what the views read of a request besides its path and query
PROXY_TIMEOUT_S = 30.0
RETRY_AFTER_S = "1"

Handler = Callable[..., Awaitable[Response]]


def forwarded_headers(headers: Mapping[str, str], me: str) -> dict[str, str]:
    """The headers a request keeps when one worker passes it to another: `FORWARDED`, and the hop."""
    return {name: value for name, value in headers.items() if name.lower() in FORWARDED} | {HOP_HEADER: me}


def unavailable(view: View, error: str) -> Response:
    return view.json({"error": error, "status": 503}, status=503, headers={"Retry-After": RETRY_AFTER_S})


def owner_route(app: faust.App, table: faust.Table, match_info: str) -> Callable[[Handler], Handler]:
    """Answers here when this worker owns the key's partition, else asks the owner (once)."""
    me = URL(str(app.conf.canonical_url))

    def decorator(view_handler: Handler) -> Handler:
        @functools.wraps(view_handler)
        async def get(view: View, request: Request, *args: Any, **kwargs: Any
                      ) -> Response:
            try:
                owner = URL(str(app.router.key_store(table.name, request.match_info[match_info])))
            except KeyError:  # no worker holds the partition now (a rebalance)
                return unavailable(view, "no worker holds this user's partition now; retry shortly")
            if (owner.host, owner.port) == (me.host, me.port):
                return await view_handler(view, request, *args, **kwargs)
            if HOP_HEADER in request.headers:
                return unavailable(view, f"forwarded by {request.headers[HOP_HEADER]}, but {owner} owns this "
                                         "user's partition here: the workers are rebalancing; retry shortly")
            url = request.url.with_scheme(owner.scheme or "http").with_host(owner.host or "").with_port(owner.port)
            try:
                async with app.http_client.get(url, headers=forwarded_headers(request.headers, str(me)),
                                               timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S)) as resp:
                    return view.bytes(await resp.read(), content_type=resp.content_type, status=resp.status)
            except (aiohttp.ClientError, TimeoutError) as e:
                return unavailable(view, f"the worker that owns this user ({owner}) did not answer ({e!r:.200}); "
                                         "retry shortly")

        return get

    return decorator


class Admission:
    """At most `limit` requests waiting for or using the compute thread at once."""

    def __init__(self, limit: int) -> None:
        self.limit, self.inside = limit, 0

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """True while the request holds a place; False (nothing held) when all are taken."""
        if self.inside >= self.limit:
            yield False
            return
        self.inside += 1
        try:
            yield True
        finally:
            self.inside -= 1
