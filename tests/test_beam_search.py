"""generator_service.beam_search on toy log-probs, without a model: greedy is the argmax, beams keep
the best extensions, stop tokens and the step limit end hypotheses, a trie forces the tokens it leaves
no choice about, and the search ends once a finished hypothesis beats every alive one."""

import math

import pytest
import torch

from generator_service.beam_search import Beams, Hyp, build_trie, longest_path, path_choices

STOP = 0  # the stop token of every test (EOS)


def _logprobs(*rows: list[float]) -> torch.Tensor:
    """Log-probs (A, V) of the given probabilities, one row per alive hypothesis."""
    return torch.tensor(rows, dtype=torch.float64).log()


def test_greedy_takes_the_argmax_until_a_stop_token():
    beams = Beams(width=1, max_steps=10, stop_ids={STOP}, trie=None)
    steps = [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.6, 0.1], [0.5, 0.2, 0.2, 0.1]]
    for probs in steps:
        step = beams.advance(_logprobs(probs), None)
        assert step.tokens.tolist() == [max(range(4), key=probs.__getitem__)]
    assert beams.tokens == [] and beams.best() == [Hyp([3, 2], STOP, pytest.approx(math.log(0.4 * 0.6 * 0.5)))]
    assert beams.best()[0].ids == [3, 2, STOP]


def test_beams_keep_the_best_extensions():
    """Each step keeps the `width` best extensions of all alive hypotheses (checked by brute force over random
    log-probs; no stop token among them), with each one's parent."""
    torch.manual_seed(0)
    beams = Beams(width=3, max_steps=10, stop_ids={99}, trie=None)
    for _ in range(4):
        logprobs = torch.randn(len(beams.tokens), 6, dtype=torch.float64).log_softmax(-1)  # (A, V)
        before = list(zip(beams.tokens, beams.scores, strict=True))
        extensions = sorted(
            (
                (score + float(logprobs[a, v]), tokens + [v])
                for a, (tokens, score) in enumerate(before)
                for v in range(6)
            ),
            reverse=True,
        )[:3]
        step = beams.advance(logprobs, None)
        assert beams.tokens == [tokens for _, tokens in extensions]
        assert beams.scores == pytest.approx([score for score, _ in extensions])
        assert [
            before[p][0] + [t] for p, t in zip(step.parents.tolist(), step.tokens.tolist(), strict=True)
        ] == beams.tokens


def test_a_stop_token_finishes_a_hypothesis_only_among_the_first_width():
    beams = Beams(width=2, max_steps=10, stop_ids={STOP}, trie=None)
    beams.advance(_logprobs([0.2, 0.3, 0.4, 0.1]), None)  # the stop token ranks third: not finished
    assert beams.finished == [] and beams.tokens == [[2], [1]]
    step = beams.advance(_logprobs([0.05, 0.9, 0.03, 0.02], [0.4, 0.3, 0.2, 0.1]), None)  # [1, STOP] ranks second
    assert step.n_alive == 2 and beams.tokens == [[2, 1], [1, 1]]
    assert beams.finished == [Hyp([1], STOP, pytest.approx(math.log(0.3 * 0.4)))]


def test_the_step_limit_cuts_a_hypothesis_without_a_stop_token():
    beams = Beams(width=1, max_steps=2, stop_ids={STOP}, trie=None)
    beams.advance(_logprobs([0.1, 0.9]), None)
    beams.advance(_logprobs([0.1, 0.9]), None)
    assert beams.tokens == [] and beams.best() == [Hyp([1, 1], None, pytest.approx(2 * math.log(0.9)))]
    assert beams.best()[0].ids == [1, 1]


def test_the_search_ends_when_a_finished_hypothesis_beats_every_alive_one():
    beams = Beams(width=2, max_steps=10, stop_ids={STOP}, trie=None)
    step = beams.advance(_logprobs([0.6, 0.3, 0.1]), None)
    assert step.n_alive == 0 and beams.tokens == []  # log 0.3 < log 0.6: nothing alive can overtake
    assert beams.best() == [Hyp([], STOP, pytest.approx(math.log(0.6)))]


def test_a_trie_forces_the_tokens_it_leaves_no_choice_about():
    trie = build_trie([[5, 6, 7, STOP], [5, 8, STOP]])
    assert trie == {(): [5], (5,): [6, 8], (5, 6): [7], (5, 6, 7): [STOP], (5, 8): [STOP]}
    beams = Beams(width=1, max_steps=longest_path(trie), stop_ids={STOP}, trie=trie)
    assert beams.choices() == [[5]]
    beams.advance(torch.zeros(1, 1), torch.tensor([[5]]))  # the only choice: probability 1
    assert beams.force()[1] == [[]] and beams.choices() == [[6, 8]]  # a choice to make: nothing forced
    step = beams.advance(_logprobs([0.7, 0.3]), torch.tensor([[6, 8]]))  # over the choices' columns
    assert (step.columns.tolist(), step.tokens.tolist()) == ([0], [6])
    kept, chains = beams.force()  # 7 is forced, then the stop token: finished
    assert kept.tolist() == [] and chains == []
    assert beams.best() == [Hyp([5, 6, 7], STOP, pytest.approx(math.log(0.7)))]


def test_forcing_stays_within_the_step_limit_and_greedy():
    trie = build_trie([[5, 6, 7, STOP]])
    short = Beams(width=1, max_steps=2, stop_ids={STOP}, trie=trie)
    short.advance(torch.zeros(1, 1), torch.tensor([[5]]))
    assert short.force()[1] == [[]]  # 6 would leave no room for the stop token
    wide = Beams(width=2, max_steps=10, stop_ids={STOP}, trie=trie)
    wide.advance(torch.zeros(1, 1), torch.tensor([[5]]))
    assert wide.force()[1] == [[]]  # beams of unequal lengths would compete


def test_path_choices_and_the_longest_path():
    trie = build_trie([[5, 6, STOP], [7, STOP], []])
    assert path_choices(trie, [5, 6, STOP]) == [[5, 7], [6], [STOP]]
    with pytest.raises(ValueError, match="not one of the allowed names"):
        path_choices(trie, [5, 7])
    assert longest_path(trie) == 3 and longest_path(None) == 0
