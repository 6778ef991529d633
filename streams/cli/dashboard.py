"""What the demo draws: the live panel (the Grafana dashboard's headline numbers, in a terminal) and,
at the end, users' lists before and after their latest event. Pure rendering: numbers in, rich out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Snapshot:
    elapsed_s: float
    published: int
    total: int
    consumed: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    hit_ours: float
    hit_popularity: float
    trials: int
    drift: int
    dead_letters: int
    lists: int
    users: int

    @property
    def lag(self) -> int:
        """Published and not yet consumed: the demo's own count, not the broker's high watermarks,
        which Tansu gets wrong for multi-record batches."""
        return max(self.published - self.consumed, 0)


def _ms(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:,.0f} ms"


def live_panel(s: Snapshot, top_k: int) -> Table:
    t = Table(title=f"interest-updater demo · {s.elapsed_s:,.0f} s", title_justify="left", show_header=False,
              box=None, padding=(0, 2))
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column(style="bold")
    t.add_column(justify="right")
    better = "green" if s.hit_ours > s.hit_popularity else "yellow"
    t.add_row("published", f"{s.published:,} / {s.total:,}", "events/s", f"{s.events_per_s:,.0f}")
    t.add_row("consumed", f"{s.consumed:,}", "lag", f"{s.lag:,}")
    t.add_row("latency p50", _ms(s.p50_ms), "latency p99", _ms(s.p99_ms))
    t.add_row(f"hit rate@{top_k} ours", Text(f"{s.hit_ours:.3f}", style=better),
              f"hit rate@{top_k} popularity", f"{s.hit_popularity:.3f}")
    t.add_row("online trials", f"{s.trials:,}", "drift detections", f"{s.drift:,}")
    t.add_row("lists emitted", f"{s.lists:,}", "dead letters", Text(f"{s.dead_letters:,}",
                                                                    style="red" if s.dead_letters else ""))
    t.add_row("users", f"{s.users:,}", "", "")
    return t


def shift_table(user: str, latest: str, before: list[str], after: list[str]) -> Group:
    """One user's list before and after `latest` (their latest event, in words); items new to the
    list are marked, so the shift is visible at a glance."""
    t = Table(show_lines=False, expand=False)
    t.add_column("#", justify="right")
    t.add_column("before")
    t.add_column("after")
    old = set(before)
    for n in range(max(len(before), len(after))):
        b = before[n] if n < len(before) else ""
        a = after[n] if n < len(after) else ""
        t.add_row(str(n + 1), b, Text(a, style="bold green") if a and a not in old else Text(a))
    return Group(Text(f"user {user}: latest event {latest}", style="bold"), t)
