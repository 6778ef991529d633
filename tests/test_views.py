"""The three forms of the cheap views (closed form, training window, online recursion) agree."""

import numpy as np
import torch

from models.config import ModelConfig
from models.data.contract import ACTIONS
from models.data.dataset import UserSeq
from models.multiview import MultiViewModel
from models.train import _batch, build_windows
from models.views import ViewLayout, ViewState, closed_form

SCENS = ("home", "search", "video")


def random_history(rng, n: int, n_items: int, late: bool = True):
    ts = np.cumsum(rng.exponential(3.6e6, n)).astype(np.int64) + 1_600_000_000_000
    ts[n // 2] += int(400 * 8.64e7)  # a very long gap: weights underflow unless kept in logs
    ts[n // 2 + 1 :] += int(400 * 8.64e7)
    if late:
        ts[-3] = ts[-4] - 5_000  # a late event
    no_like = len(ACTIONS)  # actions 1..4 only, so the 'like' view stays empty
    return (rng.integers(1, n_items + 1, n), rng.integers(1, no_like, n), rng.integers(1, 4, n), ts)


def online(layout, table, items, actions, scens, ts):
    st = ViewState.empty(layout.n, table.shape[1])
    for i, a, s, t in zip(items, actions, scens, ts, strict=True):
        st.update(layout, table[i], int(a), int(s), int(t))
    return st


def a_user(seed: int):
    """A layout, an item table and an 80-event history with a long gap and a late event."""
    rng = np.random.default_rng(seed)
    layout = ViewLayout.build(SCENS, short_tau_hours=6, long_tau_days=30)
    table = rng.normal(size=(41, 16)).astype(np.float32)
    return rng, layout, table, *random_history(rng, 80, 40)


def test_online_recursion_equals_closed_form():
    _, layout, table, items, actions, scens, ts = a_user(0)
    st = online(layout, table, items, actions, scens, ts)
    cf = closed_form(layout, actions, scens, ts)
    np.testing.assert_allclose(st.mean, cf.weights.T @ table[items], atol=1e-5)
    np.testing.assert_allclose(st.log_w, cf.log_w, rtol=1e-9)
    assert np.array_equal(st.count, cf.count)
    assert (st.count == 0).any(), "the 'like' view should be empty here, and stay exactly zero"
    assert np.all(st.mean[st.count == 0] == 0)


def test_micro_batches_of_any_size_give_the_event_by_event_state():
    rng, layout, table, items, actions, scens, ts = a_user(2)
    one_by_one = online(layout, table, items, actions, scens, ts)
    batched = ViewState.empty(layout.n, table.shape[1])
    cuts = np.sort(rng.choice(np.arange(1, 80), 9, replace=False))
    for sl in np.split(np.arange(80), cuts):  # chunks of 1 to ~30 events, the late one among them
        batched.update_many(layout, table[items[sl]], actions[sl], scens[sl], ts[sl])
    np.testing.assert_allclose(batched.mean, one_by_one.mean, atol=1e-5)
    np.testing.assert_allclose(batched.log_w, one_by_one.log_w, rtol=1e-9)
    assert np.array_equal(batched.count, one_by_one.count) and batched.last_ts == one_by_one.last_ts


def test_training_windows_reproduce_the_online_state_at_every_position():
    rng = np.random.default_rng(1)
    cfg = ModelConfig(n_items=30, scenarios=SCENS, dim=16, heads=2, max_len=8, short_tau_hours=6, long_tau_days=30)
    model = MultiViewModel(cfg).eval()
    items, actions, scens, ts = random_history(rng, 30, 30, late=False)
    user = UserSeq("u", items, actions, scens, ts)
    w = build_windows([user], model.layout, cfg.max_len)
    assert len(w) > 2, "several windows, so the carry is exercised"
    with torch.no_grad():
        table = model.item_table()
        tnp = table.numpy()
        b = _batch(w, np.arange(len(w)), model.layout.n, cfg.n_items + 1, torch.device("cpu"))
        carry = torch.sparse.mm(b["carry"], table).view(-1, model.layout.n, cfg.dim)
        views, present = model.window_views(b["items"], b["log_w"], b["ts"], table, carry, b["carry_log_w"],
                                            b["carry_ts"])
    # Loss positions, window by window, walk the events in order, each exactly once.
    positions = [(k, p) for k in range(len(w)) for p in np.flatnonzero(w.arrays["loss_mask"][k])]
    assert len(positions) == len(items) - 1
    for idx, (k, p) in enumerate(positions):
        st = online(model.layout, tnp, items[: idx + 1], actions[: idx + 1], scens[: idx + 1], ts[: idx + 1])
        np.testing.assert_allclose(views[k, p].numpy(), st.mean, atol=1e-5)
        assert np.array_equal(present[k, p].numpy(), st.count > 0)
        assert w.arrays["targets"][k, p] == items[idx + 1]
