import itertools
from collections import Counter
from pathlib import Path

import numpy as np

from models.data import movielens
from models.data.contract import read_events, read_items
from models.data.dataset import build, leave_one_out
from models.data.synth import SynthSpec, generate


def write_grouplens(folder: Path) -> None:
    folder.mkdir()
    (folder / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\nHorror|3\n\n")
    (folder / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0\n"
        "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|0|0\n"
        "3|Scream (1996)|01-Jan-1996||http://x|0|0|0|1\n",
        encoding="latin-1",
    )
    # user 7 rates 2 and 1 in the same second: file order must decide.
    (folder / "u.data").write_text("7\t2\t5\t100\n7\t1\t1\t100\n7\t3\t3\t50\n8\t1\t4\t70\n")


def test_grouplens_conversion_maps_actions_scenarios_and_orders_ties_by_line(tmp_path):
    src = tmp_path / "gl"
    write_grouplens(src)
    events_csv, items_csv = movielens.prepare(tmp_path / "out", src)
    events = read_events(events_csv)
    assert [(e.user_id, e.item_id, e.action, e.scenario, e.ts) for e in events] == [
        ("7", "3", "click", "search", 50_000),
        ("8", "1", "add_to_cart", "home", 70_000),
        ("7", "2", "purchase", "video", 100_000),
        ("7", "1", "view", "home", 100_000),
    ]
    assert len({e.event_id for e in events}) == 4
    items = {it.item_id: it for it in read_items(items_csv)}
    assert items["2"].categories == ("Action",)
    assert items["1"].text == "Toy Story (1995). Comedy"


def test_recbole_atomic_files_are_read(tmp_path):
    (tmp_path / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                           "1\tToy Story\t1995\tAnimation Children's Comedy\n")
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                            "196\t1\t3\t881250949\n")
    ratings, items = movielens.read_recbole(tmp_path)
    assert ratings == [("196", "1", 3.0, 881250949)]
    assert items["1"].title == "Toy Story (1995)" and items["1"].categories[0] == "Animation"
    assert movielens.scenario_for(items["1"].categories) == "video"


def test_leave_one_out_holds_out_the_last_two_events(small_synth):
    tr, va, te = leave_one_out(small_synth)
    for a, b, c in zip(tr, va, te, strict=True):
        assert len(b) == len(a) + 1 and len(c) == len(a) + 2
        assert np.array_equal(c.items[: len(a)], a.items)
        assert np.all(np.diff(c.ts) >= 0)


def test_synth_is_seeded_and_plants_scenario_structure():
    spec = SynthSpec(users=200, items=160, events_per_user=40, seed=5)
    a, items = generate(spec)
    b, _ = generate(spec)
    assert a == b
    assert {e.scenario for e in a} == {"home", "search", "video"}
    topic = {it.item_id: it.categories[0] for it in items}
    # Search follows a per-scenario mix: a user's search purchases concentrate on fewer topics
    # than their home purchases, which follow the shared mix plus noise from other scenarios.
    def concentration(scen: str) -> float:
        per_user: dict[str, Counter] = {}
        for e in a:
            if e.scenario == scen and e.action == "purchase":
                per_user.setdefault(e.user_id, Counter())[topic[e.item_id]] += 1
        shares = [c.most_common(1)[0][1] / c.total() for c in per_user.values() if c.total() >= 3]
        return float(np.mean(shares))
    assert concentration("search") > 0.4
    # Video continues chains: consecutive video events often share a topic.
    by_user: dict[str, list] = {}
    for e in a:
        by_user.setdefault(e.user_id, []).append(e)
    same = [topic[x.item_id] == topic[y.item_id] for evs in by_user.values() for x, y in itertools.pairwise(evs)
            if y.scenario == "video" and y.action == "purchase"]
    assert np.mean(same) > 0.5


def purchase_topic_overlap(events, topic: dict[str, str], mid: float) -> float:
    """Mean Jaccard overlap of each user's purchased topics before and after `mid`."""
    before: dict[str, set] = {}
    after: dict[str, set] = {}
    for e in events:
        if e.action == "purchase":
            (before if e.ts < mid else after).setdefault(e.user_id, set()).add(topic[e.item_id])
    return float(np.mean([len(before[u] & after[u]) / len(before[u] | after[u]) for u in before.keys() & after.keys()]))


def test_synth_shift_changes_interests_after_the_shift_point():
    shifted, items = generate(SynthSpec(users=150, items=160, events_per_user=60, seed=9, shift_at=0.5))
    steady, _ = generate(SynthSpec(users=150, items=160, events_per_user=60, seed=9))
    topic = {it.item_id: it.categories[0] for it in items}
    t0, t1 = min(e.ts for e in steady), max(e.ts for e in steady)
    mid = t0 + (t1 - t0) / 2
    assert purchase_topic_overlap(shifted, topic, mid) < purchase_topic_overlap(steady, topic, mid) - 0.1


def test_build_pins_vocabulary_and_rejects_unknown_items(small_synth):
    events, items = generate(SynthSpec(users=5, items=20, events_per_user=5, seed=1))
    data = build(events, items, ("home", "search", "video"), item_ids=[it.item_id for it in items])
    assert data.item_ids == [it.item_id for it in items]
    try:
        build(events, items, (), item_ids=["nope"])
    except ValueError as e:
        assert "not in the model's vocabulary" in str(e)
    else:
        raise AssertionError("unknown items must be rejected")
