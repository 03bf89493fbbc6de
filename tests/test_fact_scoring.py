"""Tests for generator_service.fact_scoring (shared-prefix batched scoring and decoding).

The fast tests use a tiny random Llama (2 layers, hidden 64) in float32 with a byte-level BPE
tokenizer trained in memory; the slow ones load the real SmolLM2-135M-Instruct.
"""

import math
from pathlib import Path

import pytest
import torch

from generator_service.fact_scoring import FactScorer
from generator_service.lm_loading import ModelLoadError, load_causal_lm
from tiny_lm import CHAT_TEMPLATE, tiny_llama, tiny_tokenizer

QUESTION = "What is the capital of France?"
FACTS = [
    "France capital Paris",
    "Paris is the largest city of France, on the river Seine in the north of the country",
    "Germany capital Berlin",
    "Tom Hanks born in Concord",
]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=[("sdpa", CHAT_TEMPLATE), ("eager", None)], ids=["sdpa-chat", "eager-plain"])
def scorer(request):
    attention, chat_template = request.param
    tokenizer = tiny_tokenizer(chat_template)
    return FactScorer(tiny_llama(len(tokenizer), attention), tokenizer)


def _full_logprobs(scorer: FactScorer, ids: list[int]) -> torch.Tensor:
    """Next-token log-probs after ids, from one plain forward of the whole sequence: (V,)."""
    with torch.inference_mode():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits  # (1, T, V)
    return logits[0, -1].log_softmax(-1)


def test_prefix_is_shared_and_split_at_a_token_boundary(scorer):
    prompt = scorer.build_prompt(QUESTION, FACTS)
    tok = scorer.tokenizer
    has_template = bool(tok.chat_template)
    assert len(prompt.suffixes) == len(FACTS)
    assert prompt.prefix == prompt.head + prompt.question
    assert prompt.head == scorer.build_prompt("Who?", FACTS[:1]).head  # the head does not depend on the question
    assert tok.decode(prompt.question) == f"Question: {QUESTION}\nFact:"
    for fact, suffix in zip(FACTS, prompt.suffixes, strict=True):
        assert tok.decode(suffix).startswith(f" {fact}")
        assert tok.decode(suffix).endswith("Answer:")
        joint = tok.decode(prompt.prefix) + tok.decode(suffix)
        # tokenizing prompt text in one go gives the same ids: no token spans the split
        assert tok(joint, add_special_tokens=not has_template).input_ids == prompt.prefix + suffix


def test_start_batched_equals_each_fact_alone(scorer):
    logprobs = scorer.logprobs(scorer.start(QUESTION, FACTS).hidden)  # (K, V)
    prompt = scorer.build_prompt(QUESTION, FACTS)
    assert logprobs.shape == (len(FACTS), len(scorer.tokenizer))
    for k, suffix in enumerate(prompt.suffixes):
        torch.testing.assert_close(logprobs[k], _full_logprobs(scorer, prompt.prefix + suffix), atol=1e-4, rtol=0)
        alone = scorer.logprobs(scorer.start(QUESTION, [FACTS[k]]).hidden)[0]
        torch.testing.assert_close(logprobs[k], alone, atol=1e-4, rtol=0)
    # the facts really change the distribution, so the comparisons above are not vacuous
    assert (logprobs[0] - logprobs[1]).abs().max() > 0.1


def test_start_batch_equals_each_question_alone(scorer):
    questions = [QUESTION, "Where was Tom Hanks born?", "Capital?"]
    facts = [FACTS, FACTS[3:], FACTS[1:3]]
    state = scorer.start_batch(questions, facts)
    alone = torch.cat(
        [scorer.start(q, question_facts).hidden for q, question_facts in zip(questions, facts, strict=True)]
    )
    torch.testing.assert_close(scorer.logprobs(state.hidden), scorer.logprobs(alone), atol=1e-4, rtol=0)
    stepped = scorer.step(state, torch.arange(state.hidden.shape[0]) + 5)  # one step on rows of different lengths
    prompt = scorer.build_prompt(questions[1], facts[1])
    expected = _full_logprobs(scorer, prompt.prefix + prompt.suffixes[0] + [5 + len(FACTS)])
    torch.testing.assert_close(stepped[len(FACTS)], expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        scorer.start_batch([QUESTION, QUESTION], [FACTS, []])


def test_continuation_logprobs_leave_the_state_as_is(scorer):
    state = scorer.start(QUESTION, FACTS)
    before = state.hidden.clone()
    token_lp, mask = scorer.continuation_logprobs(state, torch.tensor([2, 0]), [[7, 8, 9], [4]])  # (2, 3) each
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    prompt = scorer.build_prompt(QUESTION, FACTS)
    expected = _full_logprobs(scorer, prompt.prefix + prompt.suffixes[2] + [7, 8])[9]
    torch.testing.assert_close(token_lp[0, 2], expected, atol=1e-4, rtol=0)
    assert token_lp[1, 1:].tolist() == [0.0, 0.0]
    assert torch.equal(state.hidden, before)
    tokens = [3] * len(FACTS)
    torch.testing.assert_close(scorer.step(state, tokens), scorer.step(scorer.start(QUESTION, FACTS), tokens))


def test_step_equals_full_forward_of_extended_sequence(scorer):
    prompt = scorer.build_prompt(QUESTION, FACTS)
    state = scorer.start(QUESTION, FACTS)
    appended = [5, 17, 42]
    for token in appended:
        logprobs = scorer.step(state, [token] * len(FACTS))  # (K, V)
    for k, suffix in enumerate(prompt.suffixes):
        expected = _full_logprobs(scorer, prompt.prefix + suffix + appended)
        torch.testing.assert_close(logprobs[k], expected, atol=1e-4, rtol=0)


def test_beam_rows_select_and_step(scorer):
    """Two beams over K facts: rows b*K + k, different tokens per beam, then a reorder of the beams."""
    k = len(FACTS)
    prompt = scorer.build_prompt(QUESTION, FACTS)
    state = scorer.select_rows(scorer.start(QUESTION, FACTS), torch.arange(k).repeat(2))
    scorer.step(state, torch.tensor([7, 9]).repeat_interleave(k))
    swapped = scorer.select_rows(state, torch.tensor([1, 0]).repeat_interleave(k) * k + torch.arange(k).repeat(2))
    logprobs = scorer.step(swapped, torch.full((2 * k,), 11))  # (2K, V)
    for beam, first in enumerate([9, 7]):
        for fact, suffix in enumerate(prompt.suffixes):
            expected = _full_logprobs(scorer, prompt.prefix + suffix + [first, 11])
            torch.testing.assert_close(logprobs[beam * k + fact], expected, atol=1e-4, rtol=0)


def test_padding_does_not_leak(scorer):
    """Garbage in the padded cache slots (between a short fact and its answer) changes nothing."""
    state = scorer.start(QUESTION, FACTS)
    clean = scorer.select_rows(state, torch.arange(len(FACTS)))
    padded = (state.attention_mask == 0)[:, None, :, None]  # (K, 1, L, 1)
    assert padded.any()
    with torch.inference_mode():
        for keys, values, *_ in state.cache:  # (K, heads, L, head_dim)
            keys.masked_fill_(padded, 1e3)
            values.masked_fill_(padded, -1e3)
    tokens = [3] * len(FACTS)
    torch.testing.assert_close(scorer.step(state, tokens), scorer.step(clean, tokens), atol=1e-4, rtol=0)


def test_score_answers_matches_naive_loop(scorer):
    answers = [scorer.tokenizer("Paris", add_special_tokens=False).input_ids, [5], [9, 8, 7, 6, 5, 4]]
    batched = scorer.score_answers(QUESTION, FACTS, answers)
    naive = scorer.score_answers_naive(QUESTION, FACTS, answers)
    t_max = max(len(a) for a in answers)
    assert batched.token_logprobs.shape == (len(FACTS), len(answers), t_max)
    assert batched.mask.tolist() == [[t < len(a) for t in range(t_max)] for a in answers]
    torch.testing.assert_close(batched.mask, naive.mask)
    torch.testing.assert_close(batched.token_logprobs, naive.token_logprobs, atol=1e-4, rtol=0)
    first = scorer.logprobs(scorer.start(QUESTION, FACTS).hidden)[:, answers[1][0]]  # (K,)
    torch.testing.assert_close(batched.token_logprobs[:, 1, 0], first, atol=1e-5, rtol=0)


def test_choice_logprobs_renormalise_the_full_distribution(scorer):
    hidden = scorer.start(QUESTION, FACTS).hidden  # (K, D)
    full = scorer.logprobs(hidden)  # (K, V)
    choices = [[5, 9, 11], [7], [3, 4], [100, 5]]
    logprobs, ids = scorer.choice_logprobs(hidden, choices)  # (K, 3) each
    for row, allowed in enumerate(choices):
        torch.testing.assert_close(logprobs[row, : len(allowed)], full[row, allowed].log_softmax(-1), atol=1e-5, rtol=0)
        assert ids[row, : len(allowed)].tolist() == allowed
        assert (logprobs[row, len(allowed) :] == -math.inf).all()


def test_score_answers_within_choices_matches_naive_loop(scorer):
    """Each answer token renormalised over its position's choices, batched and naive; a token outside them: -inf."""
    answers = [[5, 9], [7, 3, 4]]
    choices = [[[5, 6], [9, 10, 11]], [[7], [3, 5], [4, 8]]]
    batched = scorer.score_answers(QUESTION, FACTS, answers, choices)
    naive = scorer.score_answers_naive(QUESTION, FACTS, answers, choices)
    torch.testing.assert_close(batched.token_logprobs, naive.token_logprobs, atol=1e-4, rtol=0)
    assert (batched.token_logprobs[:, 1, 0] == 0).all()  # the only choice: probability 1
    outside = scorer.score_answers(QUESTION, FACTS, [[6]], [[[5, 7]]]).token_logprobs  # (K, 1, 1)
    assert (outside == -math.inf).all()


def test_rejects_empty_inputs(scorer):
    with pytest.raises(ValueError):
        scorer.start(QUESTION, [])
    with pytest.raises(ValueError):
        scorer.score_answers(QUESTION, FACTS, [[5], []])


def test_load_model_directory(scorer, tmp_path):
    scorer.model.save_pretrained(tmp_path)
    scorer.tokenizer.save_pretrained(tmp_path)
    lm = load_causal_lm(tmp_path, cache_dir=tmp_path / "cache", dtype="float32", device="cpu")
    assert (lm.dtype, lm.device.type, lm.name) == (torch.float32, "cpu", tmp_path.name)
    assert not lm.model.training
    assert lm.tokenizer("Paris").input_ids == scorer.tokenizer("Paris").input_ids
    reloaded = FactScorer(lm.model, lm.tokenizer)
    torch.testing.assert_close(
        reloaded.logprobs(reloaded.start(QUESTION, FACTS).hidden),
        scorer.logprobs(scorer.start(QUESTION, FACTS).hidden),
        atol=1e-5,
        rtol=0,
    )


def test_load_errors_are_wrapped_and_leave_no_cache(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError) as caught:
        load_causal_lm(bad, cache_dir=cache)
    assert caught.value.__cause__ is not None
    assert list(cache.iterdir()) == []  # the temp dir is gone, no half-written bad/ dir
    for missing in [tmp_path / "missing.gguf", tmp_path / "no-model-here"]:
        with pytest.raises(ModelLoadError):
            load_causal_lm(missing, cache_dir=cache)
    with pytest.raises(ValueError):
        load_causal_lm(tmp_path, cache_dir=cache, dtype="float16")


@pytest.fixture(scope="module")
def smollm2():
    """The default model (the teacher: no models/student in the cwd), converted once into var/cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT / "tests")
        lm = load_causal_lm(None, cache_dir=REPO_ROOT / "var" / "cache" / "lm")
    return FactScorer(lm.model, lm.tokenizer)


@pytest.mark.slow
def test_smollm2_answers_paris_from_the_fact(smollm2):
    """With the one-shot example and the "Answer:" cue, the model answers " Paris" and stops (without
    them it starts a sentence: "The capital of France is Paris.")."""
    tok = smollm2.tokenizer
    [paris] = smollm2.answer_token_ids("Paris")
    state = smollm2.start(QUESTION, ["France capital Paris", "Germany capital Berlin"])
    logprobs = smollm2.logprobs(state.hidden)  # (K, V)
    assert int(logprobs[0].argmax()) == paris
    assert logprobs[0, paris] > logprobs[1, paris]
    assert int(smollm2.step(state, [paris, paris])[0].argmax()) == tok.eos_token_id


@pytest.mark.slow
def test_smollm2_prompt_split_and_batched_scores(smollm2):
    tok = smollm2.tokenizer
    prompt = smollm2.build_prompt(QUESTION, FACTS)
    for suffix in prompt.suffixes:
        joint = tok.decode(prompt.prefix) + tok.decode(suffix)
        assert tok(joint, add_special_tokens=False).input_ids == prompt.prefix + suffix
    answers = [tok("Paris", add_special_tokens=False).input_ids, tok("Berlin", add_special_tokens=False).input_ids]
    batched = smollm2.score_answers(QUESTION, FACTS, answers)
    naive = smollm2.score_answers_naive(QUESTION, FACTS, answers)
    # bf16 logits near |16..32| are spaced 0.125 apart: padding and batch shape change the rounding only
    torch.testing.assert_close(batched.token_logprobs, naive.token_logprobs, atol=0.1, rtol=0.05)
