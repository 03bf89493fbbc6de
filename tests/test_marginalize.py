"""Tests for generator_service.marginalize: hand-computed cases, invariants,
and a cross-check against transformers' RAG marginalisation."""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import RagSequenceForGeneration, RagTokenForGeneration

from generator_service.marginalize import (
    doc_posterior,
    gather_token_logprobs,
    log_prior,
    prefix_doc_logprobs,
    sequence_loglik,
    sequence_marginal,
    token_marginal,
    update_doc_logprobs,
)

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


# Hand-made case: 2 facts (A, B), vocab {0, 1, 2}, answer y = (0, 1), batch of 1.
PRIOR = t([[0.75, 0.25]])  # p(d|x), (1, 2)
STEP1 = t([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]])  # p(v|x,d), (1, 2, 3)
STEP2 = t([[[0.2, 0.6, 0.2], [0.5, 0.1, 0.4]]])  # p(v|x,d,y1=0), (1, 2, 3)
Y = torch.tensor([[0, 1]])  # (1, 2)
# Hand-computed:
#   step-1 marginal   .75*A + .25*B             = [0.4, 0.3875, 0.2125]
#   posterior after 0 [.375, .025] / .4         = [0.9375, 0.0625]
#   step-2 exact      .9375*A + .0625*B         = [0.21875, 0.56875, 0.2125]
#   step-2 fixed prior .75*A + .25*B            = [0.275, 0.475, 0.25]
#   p(y|x) = .75*.5*.6 + .25*.1*.1 = .2275 = .4 * .56875   (fixed prior: .4*.475 = .19)
#   p(d|x,y) = [.225, .0025] / .2275            = [90/91, 1/91]


def hand_token_logprobs():
    logits = torch.stack([STEP1, STEP2], dim=2).log()  # (1, 2, 2, 3) already normalised
    return gather_token_logprobs(logits, Y)  # (1, 2, 2)


def test_log_prior_temperature():
    scores = t([[math.log(3.0), 0.0]])
    assert torch.allclose(log_prior(scores).exp(), PRIOR)
    # tau = 2 takes the square root of the odds: 3 : 1 -> sqrt(3) : 1
    expected = t([[math.sqrt(3), 1.0]]) / (1 + math.sqrt(3))
    assert torch.allclose(log_prior(scores, tau=2.0).exp(), expected)


def test_gather_token_logprobs_shared_and_per_fact_targets():
    logits = torch.randn(2, 3, 4, 5, dtype=D)
    targets = torch.randint(0, 5, (2, 4))
    shared = gather_token_logprobs(logits, targets)
    per_fact = gather_token_logprobs(logits, targets.unsqueeze(1).expand(2, 3, 4))
    assert shared.shape == (2, 3, 4)
    assert torch.equal(shared, per_fact)
    expected = torch.log_softmax(logits, -1)[1, 2, 3, targets[1, 3]]
    assert torch.allclose(shared[1, 2, 3], expected)


def test_hand_case_token_steps():
    prior = PRIOR.log()
    m1 = token_marginal(prior, STEP1.log())
    assert torch.allclose(m1.exp(), t([[0.4, 0.3875, 0.2125]]))
    post = update_doc_logprobs(prior, STEP1.log()[:, :, 0])
    assert torch.allclose(post.exp(), t([[0.9375, 0.0625]]))
    m2 = token_marginal(post, STEP2.log())
    assert torch.allclose(m2.exp(), t([[0.21875, 0.56875, 0.2125]]))
    m2_fixed = token_marginal(prior, STEP2.log())
    assert torch.allclose(m2_fixed.exp(), t([[0.275, 0.475, 0.25]]))


def test_hand_case_sequence_and_posterior():
    prior, tok = PRIOR.log(), hand_token_logprobs()
    ll = sequence_loglik(tok, torch.ones(1, 2, dtype=torch.bool))
    assert torch.allclose(ll.exp(), t([[0.5 * 0.6, 0.1 * 0.1]]))
    assert torch.allclose(sequence_marginal(prior, ll).exp(), t([0.2275]))
    assert torch.allclose(doc_posterior(prior, ll).exp(), t([[90 / 91, 1 / 91]]))
    # exact per-step marginals multiply back to p(y|x); the fixed prior does not
    steps = torch.logsumexp(prefix_doc_logprobs(prior, tok, torch.ones(1, 2)) + tok, dim=1)
    assert torch.allclose(steps.exp(), t([[0.4, 0.56875]]))
    fixed = torch.logsumexp(prior.unsqueeze(-1) + tok, dim=1)
    assert torch.allclose(fixed.sum(-1).exp(), t([0.19]))


def test_posterior_matches_bayes_in_probability_space():
    torch.manual_seed(0)
    prior = log_prior(torch.randn(3, 4, dtype=D))
    lik = torch.rand(3, 4, dtype=D) * 0.5 + 0.01  # p(y|x,d)
    joint = prior.exp() * lik
    expected = joint / joint.sum(-1, keepdim=True)
    assert torch.allclose(doc_posterior(prior, lik.log()).exp(), expected)
    assert torch.allclose(sequence_marginal(prior, lik.log()).exp(), joint.sum(-1))


def test_single_fact_is_the_plain_lm():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 5, 7, dtype=D)
    y = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    prior = log_prior(torch.randn(2, 1, dtype=D))
    assert torch.equal(prior, torch.zeros(2, 1, dtype=D))
    lm = torch.log_softmax(logits, -1)  # (2, 1, 5, 7)
    tok = gather_token_logprobs(logits, y)
    assert torch.allclose(token_marginal(prior, lm[:, :, 0]), lm[:, 0, 0])
    ll = sequence_loglik(tok, mask)
    assert torch.allclose(sequence_marginal(prior, ll), (tok[:, 0] * mask).sum(-1))
    assert torch.equal(doc_posterior(prior, ll), prior)


def test_token_marginals_sum_to_one():
    torch.manual_seed(2)
    prior = log_prior(torch.randn(3, 5, dtype=D))
    nxt = torch.log_softmax(torch.randn(3, 5, 11, dtype=D), -1)
    assert torch.allclose(token_marginal(prior, nxt).exp().sum(-1), torch.ones(3, dtype=D))
    # with a step axis
    prefix = torch.log_softmax(torch.randn(3, 5, 4, dtype=D), dim=1)
    nxt_t = torch.log_softmax(torch.randn(3, 5, 4, 11, dtype=D), -1)
    out = token_marginal(prefix, nxt_t)
    assert out.shape == (3, 4, 11)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, 4, dtype=D))


def test_prefix_posterior_equals_stepwise_updates_and_chain_rule():
    torch.manual_seed(3)
    B, K, T, V = 2, 4, 6, 9
    prior = log_prior(torch.randn(B, K, dtype=D))
    logits = torch.randn(B, K, T, V, dtype=D) * 3
    y = torch.randint(0, V, (B, T))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 0, 0]], dtype=torch.bool)
    tok = gather_token_logprobs(logits, y)  # (B, K, T)
    prefix = prefix_doc_logprobs(prior, tok, mask)

    post, chain = prior, torch.zeros(B, dtype=D)
    for step in range(T):
        assert torch.allclose(prefix[:, :, step], post)
        marg = token_marginal(post, torch.log_softmax(logits[:, :, step], -1))  # (B, V)
        chosen = marg.gather(-1, y[:, step : step + 1]).squeeze(-1)
        chain = chain + torch.where(mask[:, step], chosen, 0.0)
        post = torch.where(mask[:, step, None], update_doc_logprobs(post, tok[:, :, step]), post)

    seq = sequence_marginal(prior, sequence_loglik(tok, mask))
    assert torch.allclose(chain, seq)
    assert torch.allclose(post, doc_posterior(prior, sequence_loglik(tok, mask)))


def test_extreme_values_stay_finite():
    prior = t([[0.0, -1e4, -1e4]]).log_softmax(-1)
    tok = t([[[-1e4, -1e4], [-1.0, -2.0], [-1e4, -3.0]]])  # (1, 3, 2)
    mask = torch.ones(1, 2)
    ll = sequence_loglik(tok, mask)
    for out in (
        sequence_marginal(prior, ll),
        doc_posterior(prior, ll),
        prefix_doc_logprobs(prior, tok, mask),
        update_doc_logprobs(prior, tok[:, :, 0]),
    ):
        assert torch.isfinite(out).all()
    # -inf under the mask counts as nothing, not nan
    masked = sequence_loglik(t([[[-math.inf, -1.0]]]), torch.tensor([[False, True]]))
    assert torch.equal(masked, t([[-1.0]]))
    # all facts equally unlikely: p(y|x) = e^-2e4, exact in log space
    flat = sequence_marginal(log_prior(torch.zeros(1, 3, dtype=D)), t([[-2e4, -2e4, -2e4]]))
    assert torch.allclose(flat, t([-2e4]))
    # huge logits: marginal still a distribution
    nxt = torch.log_softmax(t([[[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [0.0, 0.0, 1e4]]]), -1)
    assert torch.allclose(token_marginal(prior, nxt).exp().sum(-1), t([1.0]))


# ---------------------------------------------------------------- transformers


def _rag_token_marginalize(seq_logits, doc_scores, n_docs):
    # only reads self.config.n_docs when n_docs is None
    return RagTokenForGeneration.marginalize(None, seq_logits, doc_scores, n_docs)


def _rag_seq_model(pad, bos=None):
    generator = SimpleNamespace(pad_token_id=pad, bos_token_id=bos)
    return SimpleNamespace(config=SimpleNamespace(bos_token_id=None, generator=generator, n_docs=None))


@pytest.fixture
def random_rag():
    torch.manual_seed(4)
    B, K, T, V = 3, 4, 5, 13
    scores = torch.randn(B, K, dtype=D)
    logits = torch.randn(B, K, T, V, dtype=D) * 2
    y = torch.randint(1, V, (B, T))
    return scores, logits, y


def test_transformers_rag_token_uses_the_fixed_prior(random_rag):
    scores, logits, y = random_rag
    B, K, T, V = logits.shape
    theirs = _rag_token_marginalize(logits.reshape(B * K, T, V), scores, K)  # (B, T, V)
    prior = log_prior(scores)
    lp = torch.log_softmax(logits, -1)
    tok = gather_token_logprobs(logits, y)
    prefix = prefix_doc_logprobs(prior, tok, torch.ones(B, T))
    ours = token_marginal(prefix, lp)  # (B, T, V) exact

    # step 1: identical
    assert torch.allclose(theirs[:, 0], token_marginal(prior, lp[:, :, 0]))
    assert torch.allclose(theirs[:, 0], ours[:, 0])
    # later steps: theirs = ours fed the prior unchanged, not the prefix posterior
    fixed = token_marginal(prior.unsqueeze(-1).expand(B, K, T), lp)
    assert torch.allclose(theirs, fixed)
    assert not torch.allclose(theirs[:, 1:], ours[:, 1:])

    # products over steps: ours is the sequence marginal, theirs is not
    seq = sequence_marginal(prior, sequence_loglik(tok, torch.ones(B, T)))
    ours_sum = ours.gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)
    theirs_sum = theirs.gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)
    assert torch.allclose(ours_sum, seq)
    assert (theirs_sum - seq).abs().min() > 1e-3

    # RagToken get_nll is minus that fixed-prior product (target = [start, y], see below)
    model = SimpleNamespace(config=_rag_seq_model(pad=0).config, marginalize=_rag_token_marginalize)
    target = torch.cat([torch.zeros(B, 1, dtype=torch.long), y], 1)
    padded = torch.cat([logits, torch.zeros(B, K, 1, V, dtype=D)], 2).reshape(B * K, T + 1, V)
    nll = RagTokenForGeneration.get_nll(model, padded, scores, target, n_docs=K)
    assert torch.allclose(-nll, theirs_sum)


# RagSequenceForGeneration.get_nll alignment. `target` is the decoder input
# (B, 1 + T): target[:, 0] is the decoder start token and is never scored;
# seq_logits[:, t] (teacher-forced on target[:, :t+1]) scores target[:, t+1]; the
# last logits position scores a pad it appends, masked. So our (logits, y, mask)
# = (seq_logits[:, :, :T], target[:, 1:], target[:, 1:] != pad). They add the doc
# log-probs to logits position 1, i.e. to the score of the SECOND answer token
# (the first being BOS when exclude_bos_score=True and every answer starts with
# bos). Pad positions are zeroed after that addition, so if position 1 is a pad
# (a one-token answer) the prior is dropped: their ll = logsumexp_d log p(y|x,d).


def _rag_seq_nll(scores, logits, target, pad, bos=None, exclude_bos=False):
    B, K, T1, V = logits.shape
    model = _rag_seq_model(pad, bos)
    return RagSequenceForGeneration.get_nll(
        model, logits.reshape(B * K, T1, V), scores, target, exclude_bos_score=exclude_bos, n_docs=K
    )  # (B,)


def test_transformers_rag_sequence_multi_token_agrees(random_rag):
    scores, logits, y = random_rag
    B, K, T, V = logits.shape
    pad = 0
    y = y.clone()
    y[1, 3:] = pad  # a 3-token answer
    y[2, 2:] = pad  # a 2-token answer
    target = torch.cat([torch.full((B, 1), 99 % V), y], 1)  # start token, then y
    full = torch.cat([logits, torch.randn(B, K, 1, V, dtype=D)], 2)  # (B, K, T+1, V)
    theirs = -_rag_seq_nll(scores, full, target, pad)

    ours = sequence_marginal(log_prior(scores), sequence_loglik(gather_token_logprobs(logits, y), y != pad))
    assert torch.allclose(theirs, ours)


def test_transformers_rag_sequence_bos_is_excluded():
    torch.manual_seed(5)
    B, K, T, V = 2, 3, 4, 10
    pad, bos, start = 0, 1, 2
    scores = torch.randn(B, K, dtype=D)
    logits = torch.randn(B, K, T + 1, V, dtype=D)
    y = torch.randint(3, V, (B, T - 1))
    y[1, 1:] = pad  # one answer token after BOS: prior still kept here
    target = torch.cat([torch.full((B, 1), start), torch.full((B, 1), bos), y], 1)  # (B, T+1)
    theirs = -_rag_seq_nll(scores, logits, target, pad, bos=bos, exclude_bos=True)

    tok = gather_token_logprobs(logits[:, :, 1:T], y)  # positions 1.. score y
    ours = sequence_marginal(log_prior(scores), sequence_loglik(tok, y != pad))
    assert torch.allclose(theirs, ours)


def test_transformers_rag_sequence_drops_prior_for_one_token_answer(random_rag):
    scores, logits, y = random_rag
    B, K, _, V = logits.shape
    pad = 0
    target = torch.cat([torch.full((B, 1), 5), y[:, :1]], 1)  # [start, y1]
    theirs = -_rag_seq_nll(scores, logits[:, :, :2], target, pad)

    prior = log_prior(scores)
    ll = sequence_loglik(gather_token_logprobs(logits[:, :, :1], y[:, :1]), torch.ones(B, 1))  # (B, K)
    ours = sequence_marginal(prior, ll)
    # theirs is the un-weighted sum over facts: sum_d p(y|x,d) instead of sum_d p(d|x) p(y|x,d)
    assert torch.allclose(theirs, torch.logsumexp(ll, -1))
    assert torch.allclose(ours - theirs, torch.logsumexp(prior + ll, -1) - torch.logsumexp(ll, -1))
    assert (ours - theirs).abs().min() > 0.5  # e.g. about log K when the facts agree

    # facts that agree on y1: theirs over-counts by exactly log K
    same = logits[:, :1, :2].expand(B, K, 2, V)
    theirs_same = -_rag_seq_nll(scores, same, target, pad)
    ll_same = sequence_loglik(gather_token_logprobs(same[:, :, :1], y[:, :1]), torch.ones(B, 1))
    ours_same = sequence_marginal(prior, ll_same)
    assert torch.allclose(ours_same, ll_same[:, 0])
    assert torch.allclose(theirs_same - ours_same, torch.full((B,), math.log(K), dtype=D))
