"""The cheap views of the multi-view user state: time-decayed averages of item vectors.

Each view v keeps the decayed weighted mean m_v of the item vectors of the events it
selects (one scenario, one action, or everything for the long-term view) and the log of
its total weight. One event costs O(V*d), and the same numbers come out of the closed
form used offline (`closed_form`), the window form used in training (`models.multiview`)
and the recursion used online (`ViewState.update`), which a test asserts.

Working in log-weights keeps the mean exact however old a view is: a view whose weight
underflows float64 still holds the mean of its events instead of 0/0.

Late events (older than the newest one seen for the user) are applied at the user's
current time: the decay clock never runs backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.contract import ACTIONS

ACTION_WEIGHTS = {"view": 0.5, "click": 1.0, "add_to_cart": 2.0, "purchase": 3.0, "like": 2.0}
_LOG_ACTION_WEIGHTS = np.log(np.array([1.0, *(ACTION_WEIGHTS[a] for a in ACTIONS)]))  # index 0: padding


@dataclass(frozen=True)
class ViewLayout:
    """Which events each cheap view selects, and how fast it forgets.

    Views are ordered: one per scenario, one per action, then the long-term view.
    Index 0 of scenarios/actions is padding, so `scen[v] == 0` means "any scenario".
    """

    scen: np.ndarray  # (V,) scenario index selected, 0 = any
    act: np.ndarray  # (V,) action index selected, 0 = any
    tau_ms: np.ndarray  # (V,) decay time constant in ms
    weighted: np.ndarray  # (V,) bool: scale by the action weight
    names: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, scenarios: tuple[str, ...], short_tau_hours: float, long_tau_days: float) -> ViewLayout:
        n_s, n_a = len(scenarios), len(ACTIONS)
        short_ms, long_ms = short_tau_hours * 3.6e6, long_tau_days * 8.64e7
        return cls(
            scen=np.array([*range(1, n_s + 1), *[0] * n_a, 0], dtype=np.int64),
            act=np.array([*[0] * n_s, *range(1, n_a + 1), 0], dtype=np.int64),
            tau_ms=np.array([*[short_ms] * (n_s + n_a), long_ms], dtype=np.float64),
            weighted=np.array([*[True] * n_s, *[False] * n_a, True]),
            names=(*(f"scenario:{s}" for s in scenarios), *(f"action:{a}" for a in ACTIONS), "long_term"),
        )

    def log_weights(self, actions: np.ndarray, scenarios: np.ndarray) -> np.ndarray:
        """(T, V) log weight of each event in each view; -inf where the view ignores it."""
        lw = np.where(self.weighted[None, :], _LOG_ACTION_WEIGHTS[actions][:, None], 0.0)
        sel = ((self.scen[None, :] == 0) | (self.scen[None, :] == scenarios[:, None])) & (
            (self.act[None, :] == 0) | (self.act[None, :] == actions[:, None])
        )
        return np.where(sel, lw, -np.inf)


def effective_ts(ts: np.ndarray) -> np.ndarray:
    """The decay clock: late events count at the newest time seen so far."""
    return np.maximum.accumulate(ts.astype(np.int64)) if len(ts) else ts.astype(np.int64)


@dataclass
class ClosedForm:
    weights: np.ndarray  # (T, V) normalised weight of each event in each view (columns sum to 1 or 0)
    log_w: np.ndarray  # (V,) log total weight at the last event's time; -inf if empty
    count: np.ndarray  # (V,) events selected


def closed_form(layout: ViewLayout, actions: np.ndarray, scenarios: np.ndarray, ts: np.ndarray) -> ClosedForm:
    """The views after a whole history, as weights over its events (view = weights.T @ E[items])."""
    lw = layout.log_weights(actions, scenarios)
    t = effective_ts(ts)
    t_ref = t[-1] if len(t) else 0
    la = lw - (t_ref - t)[:, None] / layout.tau_ms[None, :]
    count = np.isfinite(lw).sum(0)
    top = np.where(count > 0, la.max(0, initial=-np.inf), 0.0)
    with np.errstate(divide="ignore"):
        e = np.exp(la - top[None, :])
        total = e.sum(0)
        log_w = np.where(count > 0, top + np.log(np.maximum(total, 1e-300)), -np.inf)
    weights = np.where(total[None, :] > 0, e / np.maximum(total[None, :], 1e-300), 0.0)
    return ClosedForm(weights, log_w, count)


@dataclass
class ViewState:
    """The online, O(V*d)-per-event form of the cheap views for one user."""

    mean: np.ndarray  # (V, d) float32
    log_w: np.ndarray  # (V,) float64, at `last_ts`
    count: np.ndarray  # (V,) int64
    last_ts: int

    @classmethod
    def empty(cls, n_views: int, dim: int) -> ViewState:
        return cls(
            np.zeros((n_views, dim), np.float32), np.full(n_views, -np.inf), np.zeros(n_views, np.int64), -(2**62)
        )

    def update(self, layout: ViewLayout, item_vec: np.ndarray, action: int, scenario: int, ts: int) -> None:
        self.update_many(layout, item_vec[None, :], np.array([action]), np.array([scenario]), np.array([ts]))

    def update_many(
        self, layout: ViewLayout, item_vecs: np.ndarray, actions: np.ndarray, scenarios: np.ndarray, ts: np.ndarray
    ) -> None:
        """Events in arrival order, in one step: the closed form over (the state so far as one prior
        point per view, then the events), which is what the event-by-event recursion computes, at a
        fraction of the numpy calls when a micro-batch holds several events of the user."""
        t = np.maximum.accumulate(np.maximum(ts.astype(np.int64), self.last_ts))  # late events: current time
        now = int(t[-1])
        lw = layout.log_weights(actions, scenarios)  # (m, V)
        count = np.isfinite(lw).sum(0)
        hit = count > 0
        prior = self.log_w - (now - self.last_ts) / layout.tau_ms  # -inf stays -inf
        la = np.vstack([prior[None, hit], lw[:, hit] - (now - t)[:, None] / layout.tau_ms[None, hit]])
        top = la.max(0)  # finite: each hit view selects at least one event
        e = np.exp(la - top[None, :])
        total = e.sum(0)
        mean = (e[0][:, None] * self.mean[hit] + e[1:].T @ item_vecs) / total[:, None]
        self.mean[hit] = mean.astype(np.float32)
        self.log_w = prior
        self.log_w[hit] = top + np.log(total)
        self.count += count
        self.last_ts = now
