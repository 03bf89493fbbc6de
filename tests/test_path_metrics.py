"""The thresholds chosen on held-out questions: the abstention threshold from supports."""

import pytest

from retriever_service.path_metrics import abstention_rates, best_abstain_threshold


def test_the_largest_threshold_that_still_answers_the_keep_share():
    answerable = [0.02, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99]
    unanswerable = [0.01, 0.1, 0.2, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    t, rates = best_abstain_threshold(answerable, unanswerable, keep=0.9)
    assert t == 0.3  # 9 of 10 answerable at or above it; 0.5 would answer 8
    assert rates == {"answered": 0.9, "abstained": 0.3}
    assert rates == abstention_rates(answerable, unanswerable, t)


@pytest.mark.parametrize(("keep", "expected"), [(1.0, 0.1), (0.8, 0.3), (0.5, 0.6)])
def test_keep_moves_the_threshold(keep, expected):
    t, rates = best_abstain_threshold([0.1 * i for i in range(1, 11)], [], keep=keep)
    assert t == pytest.approx(expected)
    assert rates["answered"] == pytest.approx(keep)


def test_with_an_abstain_share_the_threshold_sits_midway_to_the_negatives():
    """Generated questions part answerable (supports near 1) and negatives (near 0) far apart; people's
    questions fall between, so the threshold is set midway rather than at the answerable edge."""
    answerable = [0.6, 0.7, 0.8, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.99]
    negatives = [0.01, 0.02, 0.02, 0.03, 0.03, 0.04, 0.05, 0.05, 0.06, 0.5]
    edge, _ = best_abstain_threshold(answerable, negatives, keep=1.0)
    t, rates = best_abstain_threshold(answerable, negatives, keep=1.0, abstain=0.9)
    assert edge == 0.6
    assert t == pytest.approx((0.6 + 0.06) / 2, abs=1e-5)  # 0.06 is the support 90% of negatives sit at or under
    assert rates == {"answered": 1.0, "abstained": 0.9}


def test_an_abstain_share_the_answerable_edge_already_meets_leaves_it():
    """When the negatives reach above the answerable edge, the edge stays (no midway point below it)."""
    t, _ = best_abstain_threshold([0.5, 0.6, 0.7], [0.1, 0.55, 0.8], keep=1.0, abstain=0.9)
    assert t == 0.5
