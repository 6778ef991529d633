import math

import numpy as np
import pytest

from models.metrics import ranking_metrics, target_ranks


def test_ranks_count_higher_scores_and_break_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0], [-np.inf, 0.2, 0.3, 0.1]])
    assert target_ranks(scores, np.array([2, 3, 3])).tolist() == [1, 3, 2]


def test_metrics_match_hand_computed_values():
    # ranks 0, 1, 4, 12 at k=10: hits for the first three.
    m = ranking_metrics(np.array([0, 1, 4, 12]), k=10)
    assert m["hr@10"] == pytest.approx(3 / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 4)


def test_rank_at_cutoff_is_a_miss():
    assert ranking_metrics(np.array([10]), k=10) == {"hr@10": 0.0, "ndcg@10": 0.0, "mrr@10": 0.0}
