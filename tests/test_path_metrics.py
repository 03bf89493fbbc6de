"""The thresholds chosen on held-out questions: the abstention threshold from supports."""

import pytest

from retriever_service.path_metrics import abstention_rates, best_abstain_threshold


def test_the_lowest_threshold_that_meets_the_abstention_target_when_answering_holds():
    answerable = [0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99]
    unanswerable = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.5]
    t, rates = best_abstain_threshold(answerable, unanswerable, keep=0.9, target=0.9)
    assert 0.09 < t < 0.0900001  # just above the ninth unanswerable support: 9 of 10 abstained
    assert rates == {"answered": 1.0, "abstained": 0.9}
    assert rates == abstention_rates(answerable, unanswerable, t)


def test_answering_comes_first_when_the_target_would_cost_answers():
    answerable = [0.02, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99]
    unanswerable = [0.1, 0.2, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]
    t, rates = best_abstain_threshold(answerable, unanswerable, keep=0.9, target=0.9)
    assert t == 0.3  # the largest threshold that answers 9 of 10: it abstains on 2 of 10 only
    assert rates == {"answered": 0.9, "abstained": 0.2}


@pytest.mark.parametrize("unanswerable", [[], [0.99]])
def test_without_usable_negatives_the_keep_rule_decides(unanswerable):
    answerable = [0.1 * i for i in range(1, 11)]
    t, rates = best_abstain_threshold(answerable, unanswerable, keep=0.8, target=0.9)
    assert t == pytest.approx(0.3)
    assert rates["answered"] == 0.8
