"""Tests for generator_service.rag: RAG-Token and RAG-Sequence decoding with the exact marginal.

The fast tests use the tiny random Llama of tiny_lm.py (float32), with a chat template and
without; the slow one loads the real SmolLM2-135M-Instruct.
"""

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from generator_service.lm_loading import load_causal_lm
from generator_service.marginalize import token_marginal, update_doc_logprobs
from generator_service.rag import RagGenerator, RagRequest, RagResult, decoding_rows
from tiny_lm import tiny_lm

QUESTION = "What is the capital of France?"
FACTS = ["France capital Paris", "France borders Spain", "Germany capital Berlin", "Tom Hanks born in Concord"]
PRIORS = [math.log(p) for p in (0.5, 0.2, 0.2, 0.1)]
ALLOWED = ["Paris", "Spain", "Berlin", "Tom Hanks", "Concord", "France"]
REQUEST = RagRequest(QUESTION, FACTS, PRIORS, max_new_tokens=6)
OTHERS = [  # different questions, numbers of facts and options
    RagRequest("Where was Tom Hanks born?", FACTS[3:], [0.0], max_new_tokens=4),
    RagRequest("Which country borders France?", FACTS[:2], [-0.1, -2.4], num_beams=3, max_new_tokens=5),
    RagRequest("Capital of Germany?", FACTS[1:3], [-1.0, -0.5], mode="sequence", max_new_tokens=3),
    RagRequest(QUESTION, FACTS, PRIORS, mode="sequence", num_beams=2, allowed_answers=ALLOWED),
    RagRequest(QUESTION, FACTS[:3], PRIORS[:3], allowed_answers=ALLOWED, max_new_tokens=1),
]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["sdpa-chat", "eager-plain"])
def gen(request) -> RagGenerator:
    if request.param == "sdpa-chat":
        return RagGenerator(tiny_lm())
    return RagGenerator(tiny_lm(chat_template=None, attention="eager"))


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    return abs(a - b) <= tol


def _assert_same(result: RagResult, other: RagResult, tol: float = 1e-4) -> None:
    assert (result.answer, result.token_ids, result.complete) == (other.answer, other.token_ids, other.complete)
    assert _close(result.log_prob, other.log_prob, tol)
    for share, other_share in zip(result.facts, other.facts, strict=True):
        assert share.index == other_share.index
        assert _close(share.log_likelihood, other_share.log_likelihood, tol)
        assert _close(share.log_posterior, other_share.log_posterior, tol)


def _reference_greedy(gen: RagGenerator, request: RagRequest, trie: dict | None = None) -> tuple[list[int], float]:
    """RAG-Token greedy decoding written out step by step, one pass per token, from the whole vocabulary's
    log-probs; within a trie if one is given, each fact's renormalised over the allowed tokens: tokens (stop
    included) and log p(y|x)."""
    state = gen.scorer.start(request.question, request.facts)
    doc = torch.tensor(request.log_priors).log_softmax(-1)[None]  # (1, K)
    tokens, total = [], 0.0
    for _ in range(request.max_new_tokens):
        per_fact = gen.scorer.logprobs(state.hidden)  # (K, V)
        if trie is not None:
            allowed = torch.full_like(per_fact, -math.inf)  # (K, V)
            allowed[:, trie[tuple(tokens)]] = 0.0
            per_fact = (per_fact + allowed).log_softmax(-1)  # (K, V)
        marginal = token_marginal(doc, per_fact[None])[0]  # (V,)
        token = int(marginal.argmax())
        total += float(marginal[token])
        doc = update_doc_logprobs(doc, per_fact[None, :, token])
        tokens.append(token)
        if token in gen.stop_ids:
            break
        gen.scorer.step(state, [token] * len(request.facts))
    return tokens, total


@pytest.mark.parametrize("options", [{}, {"num_beams": 3}, {"mode": "sequence"}, {"allowed_answers": ALLOWED}])
def test_log_prob_is_the_exact_marginal_of_the_returned_tokens(gen, options):
    request = replace(REQUEST, **options)
    [result] = gen.generate([request])
    assert result.new_tokens == len(result.token_ids) >= 1
    allowed = request.allowed_answers
    _assert_same(result, gen.score(QUESTION, FACTS, PRIORS, result.token_ids, allowed))
    if result.complete:
        assert result.token_ids[-1] in gen.stop_ids
        _assert_same(result, gen.score(QUESTION, FACTS, PRIORS, result.answer, allowed))  # text + EOS


def test_a_request_takes_a_row_per_fact_and_beam():
    assert REQUEST.rows == decoding_rows(len(FACTS)) == len(FACTS)
    assert replace(REQUEST, num_beams=3, mode="sequence").rows == decoding_rows(len(FACTS), 3) == 3 * len(FACTS)


def test_answers_stop_at_eos_or_a_newline(gen):
    tok = gen.lm.tokenizer
    newline = tok("\n", add_special_tokens=False).input_ids
    assert {tok.eos_token_id, *newline} <= gen.stop_ids
    assert not gen.stop_ids & set(tok(" Paris, France", add_special_tokens=False).input_ids)


def test_greedy_follows_the_marginal_step_by_step(gen):
    tokens, log_prob = _reference_greedy(gen, REQUEST)
    [result] = gen.generate([REQUEST])
    assert result.token_ids == tokens
    assert _close(result.log_prob, log_prob)


@pytest.mark.parametrize("allowed", [ALLOWED, ["Tom Hanks"]])
def test_constrained_greedy_feeds_forced_tokens_together(gen, allowed, monkeypatch):
    request = replace(REQUEST, allowed_answers=allowed, max_new_tokens=1)
    trie = gen._trie(allowed)
    tokens, log_prob = _reference_greedy(gen, replace(request, max_new_tokens=max(map(len, trie)) + 1), trie)
    passes = []
    monkeypatch.setattr(
        gen.scorer,
        "append",
        lambda state, feeds: passes.append(feeds) or type(gen.scorer).append(gen.scorer, state, feeds),
    )
    [result] = gen.generate([request])
    assert result.token_ids == tokens and _close(result.log_prob, log_prob)
    assert len(passes) <= len(tokens) - 2  # one pass per token before the stop, at most, less the forced ones
    if len(allowed) == 1:  # nothing to choose: the name has probability 1 and needs no pass at all
        assert passes == [] and result.log_prob == 0.0


def test_one_fact_is_the_plain_language_model(gen):
    request = replace(REQUEST, facts=FACTS[:1], log_priors=[0.0], max_new_tokens=8)
    [result] = gen.generate([request])
    prompt = gen.scorer.build_prompt(QUESTION, FACTS[:1])
    context = prompt.prefix + prompt.suffixes[0]
    ids = torch.tensor([context + result.token_ids])  # (1, C + T)
    with torch.inference_mode():
        logprobs = gen.lm.model(input_ids=ids).logits[0, len(context) - 1 : -1].log_softmax(-1)  # (T, V)
    assert logprobs.argmax(-1).tolist() == result.token_ids  # greedy on the plain LM
    picked = logprobs.gather(-1, ids[0, len(context) :, None])  # (T, 1)
    assert _close(result.log_prob, float(picked.sum()))
    assert _close(result.facts[0].log_likelihood, result.log_prob)
    assert result.facts[0].log_posterior == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("options", [{}, {"mode": "sequence", "num_beams": 2}])
def test_posteriors_sum_to_one_and_follow_bayes(gen, options):
    [result] = gen.generate([replace(REQUEST, **options)])
    assert [share.index for share in result.facts] == list(range(len(FACTS)))
    assert math.fsum(math.exp(share.log_posterior) for share in result.facts) == pytest.approx(1.0, abs=1e-5)
    for share, prior in zip(result.facts, PRIORS, strict=True):
        assert _close(share.log_prior, prior, 1e-6)
        assert _close(share.log_posterior, share.log_prior + share.log_likelihood - result.log_prob)
    joint = [share.log_prior + share.log_likelihood for share in result.facts]
    assert _close(result.log_prob, float(torch.tensor(joint).logsumexp(0)))


def test_priors_are_renormalised(gen):
    shifted = replace(REQUEST, log_priors=[p + 3.0 for p in PRIORS])
    _assert_same(gen.generate([shifted])[0], gen.generate([REQUEST])[0])


def test_one_beam_is_greedy(gen):
    greedy = gen.generate([REQUEST])[0]
    tokens, _ = _reference_greedy(gen, REQUEST)
    beam = gen.generate([replace(REQUEST, num_beams=1)])[0]
    assert greedy.token_ids == beam.token_ids == tokens


@pytest.mark.parametrize("max_new_tokens", [2, 6])
def test_token_beam_search_is_at_least_as_good_as_greedy(gen, max_new_tokens):
    """Guaranteed for 2 steps (greedy's path is among the candidates or beaten by complete ones); beam
    search can in general prune the prefix of a better answer, but not on these inputs. (RAG-Sequence
    has no such order: each fact's beams need not contain its greedy answer.)"""
    for question in [QUESTION, "Where was Tom Hanks born?", "Who borders Spain?"]:
        request = replace(REQUEST, question=question, max_new_tokens=max_new_tokens)
        greedy = gen.generate([request])[0]
        for beams in (2, 4):
            result = gen.generate([replace(request, num_beams=beams)])[0]
            assert result.log_prob >= greedy.log_prob - 1e-5
            assert _close(result.log_prob, gen.score(question, FACTS, PRIORS, result.token_ids).log_prob)


def test_sequence_mode_returns_the_best_scored_candidate(gen):
    """Greedy RAG-Sequence: the candidates are each fact's own greedy answer (= k=1 generation)."""
    request = replace(REQUEST, mode="sequence")
    alone = gen.generate([replace(request, facts=[fact], log_priors=[0.0]) for fact in FACTS])
    candidates = {tuple(result.token_ids) for result in alone}
    scored = [gen.score(QUESTION, FACTS, PRIORS, list(ids)) for ids in candidates]
    best = max(scored, key=lambda result: result.log_prob)
    [result] = gen.generate([request])
    assert tuple(result.token_ids) in candidates
    assert result.token_ids == best.token_ids
    assert _close(result.log_prob, best.log_prob)


@pytest.mark.parametrize("max_new_tokens", [1, 8])
@pytest.mark.parametrize("options", [{}, {"num_beams": 3}, {"mode": "sequence"}, {"mode": "sequence", "num_beams": 2}])
def test_constrained_answers_are_allowed_names(gen, options, max_new_tokens):
    for question, allowed in [(QUESTION, ALLOWED), ("Who?", ["Tom Hanks", "Concord"]), ("What?", ["Paris"])]:
        request = replace(
            REQUEST, question=question, allowed_answers=allowed + ["  "], max_new_tokens=max_new_tokens, **options
        )
        [result] = gen.generate([request])
        assert result.answer in allowed
        assert result.complete and result.token_ids[-1] == gen.lm.tokenizer.eos_token_id
        _assert_same(result, gen.score(question, FACTS, PRIORS, result.answer, allowed))


def test_constrained_probabilities_are_a_distribution_over_the_names(gen):
    """Renormalised within the trie, p(y|x,d) sums to one over the allowed names for every fact, and so does
    the marginal; a name outside them cannot be scored."""
    scored = [gen.score(QUESTION, FACTS, PRIORS, name, ALLOWED) for name in ALLOWED]
    assert math.fsum(math.exp(result.log_prob) for result in scored) == pytest.approx(1.0, abs=1e-5)
    for k in range(len(FACTS)):
        assert math.fsum(math.exp(result.facts[k].log_likelihood) for result in scored) == pytest.approx(1.0, abs=1e-5)
    unconstrained = gen.score(QUESTION, FACTS, PRIORS, "Paris")
    assert unconstrained.log_prob < scored[0].log_prob  # the same name, before renormalising
    with pytest.raises(ValueError, match="not one of the allowed names"):
        gen.score(QUESTION, FACTS, PRIORS, "Madrid", ALLOWED)


def test_batched_generate_equals_each_alone(gen):
    requests = [REQUEST, *OTHERS, REQUEST]
    batched = gen.generate(requests)
    assert len(batched) == len(requests)
    for request, result in zip(requests, batched, strict=True):
        _assert_same(result, gen.generate([request])[0])
    assert gen.generate([]) == []


@pytest.mark.parametrize("allowed", [None, ALLOWED])
def test_naive_reference_agrees_with_one_fact(gen, allowed):
    request = replace(REQUEST, facts=FACTS[:1], log_priors=[0.0], allowed_answers=allowed)
    naive = gen.generate_naive(request)
    _assert_same(naive, gen.generate([request])[0])


def test_naive_reference_is_a_scored_candidate(gen):
    naive = gen.generate_naive(REQUEST)
    assert _close(naive.log_prob, gen.score(QUESTION, FACTS, PRIORS, naive.token_ids).log_prob)


@pytest.mark.parametrize(
    "bad",
    [
        {"facts": []},
        {"log_priors": PRIORS[:2]},
        {"log_priors": [-math.inf] * len(FACTS)},
        {"log_priors": [math.nan] + PRIORS[1:]},
        {"mode": "beam"},
        {"num_beams": 0},
        {"max_new_tokens": 0},
        {"allowed_answers": []},
        {"allowed_answers": [" "]},
    ],
)
def test_rejects_bad_requests(gen, bad):
    with pytest.raises(ValueError):
        gen.generate([REQUEST, replace(REQUEST, **bad)])


@pytest.mark.slow
def test_smollm2_answers_paris_from_the_fact():
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT / "tests")  # no models/student here: the teacher
        lm = load_causal_lm(None, cache_dir=REPO_ROOT / "var" / "cache" / "lm")
    gen = RagGenerator(lm)
    request = RagRequest(QUESTION, FACTS[:3], [math.log(p) for p in (0.8, 0.1, 0.1)])
    [result] = gen.generate([request])
    assert result.answer == "Paris"
    assert result.complete
    assert math.exp(result.facts[0].log_posterior) > 0.9
    scored = gen.score(QUESTION, FACTS[:3], request.log_priors, "Paris")
    assert result.log_prob == pytest.approx(scored.log_prob, abs=0.05)  # bf16: decoding and scoring round apart
