"""The encoder, training, checkpoints and the inference API on small synthetic data."""

import argparse
import copy

import numpy as np
import pytest
import torch

from models.checkpoint import load_model, save_model, state_equal
from models.config import ModelConfig, TrainConfig
from models.data.dataset import UserSeq, leave_one_out
from models.evaluate import evaluate
from models.inference import InterestEncoder, pad_windows
from models.multiview import MultiViewModel
from models.text import embed_texts
from models.train import _ce, extend_vocabulary, train
from models.views import ViewState
from streams.cli.model import parse_duration


@pytest.fixture(scope="module")
def trained(small_synth):
    tr, va, te = leave_one_out(small_synth)
    cfg = ModelConfig(n_items=small_synth.n_items, scenarios=small_synth.scenarios, dim=32, max_len=20)
    text = embed_texts([it.text for it in small_synth.items])
    model, info = train(text, tr, va, cfg, TrainConfig(epochs=6, patience=10, batch_size=64),
                        torch.device("cpu"), progress=False)
    return model, info, (tr, va, te)


def test_encoder_is_causal():
    cfg = ModelConfig(n_items=50, scenarios=("a", "b"), dim=16, max_len=10)
    model = MultiViewModel(cfg).eval()
    model.trained_mask.fill_(True)  # use the learned item table, not the (empty) text projection
    items = torch.randint(1, 51, (2, 10))
    other = items.clone()
    other[:, 6:] = torch.randint(1, 51, (2, 4))
    z = torch.ones_like(items)
    with torch.no_grad():
        table = model.item_table()
        a = model.encode(table, items, z, z, z)
        b = model.encode(table, other, z, z, z)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_training_reduces_loss_and_beats_popularity(trained):
    model, info, (tr, _, te) = trained
    losses = [h["loss"] for h in info["history"]]
    assert losses[-1] < losses[0] - 0.5
    result = evaluate(InterestEncoder(model, torch.device("cpu")), te, tr)
    assert result["model"]["ndcg@10"] > result["popularity"]["ndcg@10"]


def test_checkpoint_round_trip(trained, small_synth, tmp_path):
    model, _, (_, _, te) = trained
    version = save_model(model, small_synth.item_ids, tmp_path / "m", "m", {"note": "test"})
    loaded, meta = load_model(tmp_path / "m")
    assert meta["model_version"] == version and version.startswith("m-")
    assert meta["item_ids"] == small_synth.item_ids
    assert state_equal(model, loaded)
    a = InterestEncoder(model, torch.device("cpu")).user_vectors(te[:20], np.ones(20, np.int64))
    from_disk = InterestEncoder.load(tmp_path / "m", device="cpu")
    assert from_disk.model_version == version
    b = from_disk.user_vectors(te[:20], np.ones(20, np.int64))
    np.testing.assert_array_equal(a["fused"], b["fused"])
    # Saving the same weights again gives the same version: the version names the weights.
    assert save_model(loaded, small_synth.item_ids, tmp_path / "again", "m", {}) == version


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="iu train"):
        load_model(tmp_path / "nothing")


def test_online_state_matches_offline_user_vectors(trained):
    """Replaying a history event by event through the online API gives the offline vectors."""
    model, _, (_, _, te) = trained
    enc = InterestEncoder(model, torch.device("cpu"))
    users = te[:16]
    offline = enc.user_vectors(users, np.full(len(users), 2))
    states = []
    for u in users:
        st: ViewState = enc.new_state()
        for i, a, s, t in zip(u.items, u.actions, u.scenarios, u.ts, strict=True):
            enc.apply_event(st, int(i), int(a), int(s), int(t))
        states.append(st)
    short = enc.encode(pad_windows(users, model.cfg.max_len))  # one batched forward for all users
    fused, _ = enc.fuse(short, np.stack([s.mean for s in states]), np.stack([s.count > 0 for s in states]),
                        np.full(len(users), 2))
    np.testing.assert_allclose(short, offline["short"], atol=1e-5)
    np.testing.assert_allclose(fused, offline["fused"], atol=1e-5)


def test_windows_padded_to_the_longest_history_encode_as_padded_to_max_len(trained):
    """Trailing padding changes no output (causal attention), so batches are padded only as far as
    their longest history; checked against the same windows padded to the model's full length."""
    model, _, (_, _, te) = trained
    enc = InterestEncoder(model, torch.device("cpu"))
    users = [UserSeq(u.user_id, u.items[:n], u.actions[:n], u.scenarios[:n], u.ts[:n])
             for u, n in zip(te[:8], (1, 2, 3, 5, 8, 3, 2, 4), strict=True)]
    short = pad_windows(users, model.cfg.max_len)
    assert short["items"].shape[1] == 8 < model.cfg.max_len
    full = {k: np.pad(v, ((0, 0), (0, model.cfg.max_len - v.shape[1]))) if v.ndim == 2 else v
            for k, v in short.items()}
    np.testing.assert_allclose(enc.encode(short), enc.encode(full), atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_the_last_position_alone_encodes_as_the_whole_window(layers):
    """Serving computes the top layer for each window's last position only; it must equal the full
    forward read at that position, whatever the window lengths and however many layers."""
    torch.manual_seed(layers)
    model = MultiViewModel(ModelConfig(n_items=40, scenarios=("a", "b"), dim=16, layers=layers, heads=2, inner=32,
                                       max_len=12)).eval()
    lengths = torch.tensor([1, 5, 12, 7])
    items = torch.randint(1, 41, (4, 12)) * (torch.arange(12) < lengths.unsqueeze(1))
    actions, scens, gaps = ((items > 0).long() * torch.randint(1, 3, (4, 12)) for _ in range(3))
    table = model.item_table()
    with torch.inference_mode():
        full = model.encode(table, items, actions, scens, gaps)[torch.arange(4), lengths - 1]
        last = model.encode_last(table, items, actions, scens, gaps, lengths - 1)
    torch.testing.assert_close(last, full, atol=1e-5, rtol=1e-4)
    assert not any("_lower" in k for k in model.state_dict())  # the shared lower half is not saved twice


def test_cold_items_get_text_vectors_near_their_topic(trained, small_synth):
    """An item with no training events is placed by its text: nearer its topic's items than others."""
    model, _, _ = trained
    table = InterestEncoder(model, torch.device("cpu")).table
    topic = np.array(["", *(it.categories[0] for it in small_synth.items)])
    trained_mask = model.trained_mask.numpy()
    cold = np.flatnonzero(~trained_mask[1:]) + 1
    warm = np.flatnonzero(trained_mask[1:]) + 1
    # Embed one held-out text through the same projection, as a new catalog item would be.
    vec = model.text_proj(torch.as_tensor(embed_texts([small_synth.items[warm[0] - 1].text]))).detach().numpy()[0]
    sims = table[warm] @ vec / (np.linalg.norm(table[warm], axis=1) * np.linalg.norm(vec) + 1e-9)
    same = topic[warm] == topic[warm[0]]
    assert sims[same].mean() > sims[~same].mean()
    assert np.all(np.isfinite(table[cold]))


def test_sampled_softmax_masks_accidental_hits_and_learns():
    torch.manual_seed(0)
    table = torch.randn(40, 8)
    targets = torch.tensor([3, 7])
    # A user vector pointing at its target gives a much lower loss than one pointing away.
    good = _ce(table[targets] * 5, table, targets, negatives=39)
    bad = _ce(-table[targets] * 5, table, targets, negatives=39)
    assert good < bad
    # With every item drawn as a negative the target itself must be masked: loss stays finite.
    assert torch.isfinite(_ce(table[targets], table, targets, negatives=400))


def test_a_resumed_model_keeps_its_items_learns_new_ones_and_checkpoints_each_best_epoch(trained, small_synth):
    """Fine-tuning from a trained model: the vocabulary grows by the new items (starting where the model
    serves them now, at their text projection), old rows are where they were, and `on_best` sees
    every improving epoch; a time budget of ~0 runs one epoch at most."""
    model, _, (tr, va, _) = trained
    start = copy.deepcopy(model)
    new_text = embed_texts(["a brand new film about space", "a new cooking show"])
    bigger = extend_vocabulary(start, new_text)
    n = model.cfg.n_items
    with torch.no_grad():
        assert torch.equal(bigger.item_table()[: n + 1], model.item_table())
        assert torch.allclose(bigger.item_table()[n + 1:], model.text_proj(torch.as_tensor(new_text)), atol=1e-6)
    shifted = [UserSeq(u.user_id, np.append(u.items[:-1], n + 1 + k % 2), u.actions, u.scenarios, u.ts)
               for k, u in enumerate(tr)]  # every user's last training event is on a new item
    seen: list[int] = []
    tuned, info = train(np.zeros((0, 384), np.float32), shifted, va, bigger.cfg,
                        TrainConfig(epochs=3, patience=10, batch_size=64), torch.device("cpu"), progress=False,
                        start=bigger, on_best=lambda m, i: seen.append(i["best_epoch"]))
    assert tuned.trained_mask[n + 1:].all() and tuned.trained_mask[: n + 1].equal(model.trained_mask)
    assert seen and seen[-1] == info["best_epoch"] and len(info["history"]) == 3
    _, once = train(np.zeros((0, 384), np.float32), shifted, va, bigger.cfg, TrainConfig(epochs=3, batch_size=64),
                    torch.device("cpu"), progress=False, start=copy.deepcopy(bigger), budget_s=1e-9)
    assert len(once["history"]) == 1


def test_durations_read_as_seconds():
    assert [parse_duration(t) for t in ("90m", "6h", "3d", "45", "1.5h")] == [5400, 21600, 259200, 45, 5400]
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        parse_duration("soon")
