"""The generator's decoding engine: answers from the exact RAG marginal over K retrieved facts.

    p(y|x) = sum_d p(d|x) p(y|x,d)

RAG-Token decodes on the per-step marginal sum_d p(d|x,y<t) p(y_t|x,d,y<t), the fact weights
updated by Bayes after every token, so the accumulated score of a hypothesis is exactly log p(y|x)
(see marginalize.py). RAG-Sequence decodes each fact on its own, then rescores every distinct
candidate under every fact and ranks by log p(y|x). Both return each fact's prior, likelihood
and posterior p(d|x,y).

Answers end at a stop token: the tokenizer's EOS (SmolLM2: <|im_end|>) or any newline token (an
entity name is one line). The stop token is the last of a result's token_ids and its probability
is part of log_prob, so log_prob is the probability that the answer is exactly y; `score` of an
answer text likewise scores it followed by EOS. An answer cut at max_new_tokens has no stop token
(complete=False) and log_prob is the probability that the answer starts with y.

All requests of a `generate` call decode together: every question's fact rows (and beams) are
rows of one DecodeState, and each step is one forward pass over all of them. The beam search
itself, and the token trie, are beam_search.py's; the prompt is prompt.py's.

allowed_answers (None: free generation) restricts the answer to a token trie of the allowed names
(tokenized as written after the answer cue, each followed by EOS; the step limit rises to fit the
longest), and each fact's next-token distribution is renormalised over the tokens the trie allows after the answer so
far: p(y|x,d) is then a distribution over the allowed names, p(y|x) = sum_d p(d|x) p(y|x,d) the
exact marginal of those (`score` with the same names gives it for any one of them). Only the
allowed tokens' rows of the output projection are computed, not all of the vocabulary. A token
that is the only one allowed has probability 1: in greedy decoding it is fed in the same pass as
the chosen token before it, and a name that its first tokens set apart ends without another pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from generator_service.beam_search import Beams, Hyp, Trie, build_trie, longest_path, path_choices
from generator_service.fact_scoring import DecodeState, FactScorer
from generator_service.lm_loading import LoadedLM
from generator_service.marginalize import (
    doc_posterior,
    sequence_loglik,
    sequence_marginal,
    token_marginal,
    update_doc_logprobs,
)
from generator_service.prompt import DEFAULT_INSTRUCTION


@dataclass
class RagRequest:
    question: str
    facts: list[str]  # fact sentences, e.g. "France capital Paris"
    log_priors: list[float]  # log p(d|x), one per fact; renormalised, so proportional is enough
    mode: Literal["token", "sequence"] = "token"
    max_new_tokens: int = 16  # stop token included; constrained decoding raises it to the longest allowed name
    num_beams: int = 1
    allowed_answers: list[str] | None = None  # the names the answer may be (constrained decoding); None: any text

    @property
    def rows(self) -> int:
        return decoding_rows(len(self.facts), self.num_beams)


def decoding_rows(facts: int, num_beams: int = 1) -> int:
    """The rows a question takes in a decoding batch: each fact's prompt once per beam (RAG-Token's beams
    over all facts, or RAG-Sequence's beams per fact). A scored answer takes one row per fact."""
    return facts * num_beams


@dataclass
class FactShare:
    index: int  # position in request.facts
    log_prior: float  # log p(d|x)
    log_likelihood: float  # log p(y|x,d)
    log_posterior: float  # log p(d|x,y)


@dataclass
class RagResult:
    answer: str  # decoded, stripped, without the stop token
    token_ids: list[int]  # the tokens y that log_prob scores: the answer and its stop token (if any)
    log_prob: float  # log p(y|x), the exact marginal of token_ids
    facts: list[FactShare]  # in request order
    new_tokens: int  # tokens generated (0 for score)
    complete: bool = True  # False when cut at max_new_tokens, without a stop token


class _TokenSearch:
    """RAG-Token: one beam search on the marginal sum_d p(d|x,y<t) p(y_t|x,d,y<t); beam b, fact k is row b*K + k."""

    def __init__(self, beams: Beams, prior: torch.Tensor) -> None:
        self.beams, self.prior = beams, prior  # prior (K,)
        self.doc = prior[None]  # (A, K) log p(d|x,y<t)
        self.loglik = torch.zeros_like(self.doc)  # (A, K) log p(y<t|x,d)
        self.finished_loglik: list[torch.Tensor] = []  # (K,) per finished hypothesis, as beams.finished

    @property
    def rows(self) -> int:
        return len(self.beams.tokens) * self.prior.numel()

    def choices(self) -> list[list[int]] | None:
        """The allowed next tokens of each row (A*K): its hypothesis's; None without a trie."""
        per_hyp = self.beams.choices()
        return None if per_hyp is None else [tokens for tokens in per_hyp for _ in range(self.prior.numel())]

    def advance(self, logprobs: torch.Tensor, choices: torch.Tensor | None) -> tuple[torch.Tensor, list[list[int]]]:
        """One step from this search's rows' log-probs (A*K, C), over the vocabulary or over each row's choices
        (ids (A*K, C)); returns its next rows (parents) and, per row, the tokens to feed: the chosen one, then
        those the trie forces (probability 1 under every fact: the fact weights and likelihoods stay)."""
        k = self.prior.numel()
        per_fact = logprobs.view(-1, k, logprobs.shape[-1])  # (A, K, C)
        per_hyp = None if choices is None else choices.view(-1, k, choices.shape[-1])[:, 0]  # (A, C)
        step = self.beams.advance(token_marginal(self.doc, per_fact), per_hyp)  # (N,) each
        chosen = per_fact[step.parents, :, step.columns]  # (N, K) log p(y_t|x,d,y<t)
        loglik = self.loglik[step.parents] + chosen  # (N, K)
        n = step.n_alive
        self.finished_loglik.extend(loglik[n:])
        kept, chains = self.beams.force()  # (A',): the alive ones that forcing did not finish
        still_alive = set(kept.tolist())
        self.finished_loglik.extend(loglik[i] for i in range(n) if i not in still_alive)
        self.doc = update_doc_logprobs(self.doc[step.parents[:n]], chosen[:n])[kept]  # (A', K)
        self.loglik = loglik[:n][kept]  # (A', K)
        rows = step.parents[:n][kept, None] * k + torch.arange(k)  # (A', K)
        feeds = [[token] + chain for token, chain in zip(step.tokens[:n][kept].tolist(), chains, strict=True)]
        return rows.flatten(), [feed for feed in feeds for _ in range(k)]

    def best(self) -> tuple[Hyp, torch.Tensor]:
        """The best finished hypothesis and its log p(y|x,d) (K,)."""
        index = max(range(len(self.beams.finished)), key=lambda i: self.beams.finished[i].score)
        return self.beams.finished[index], self.finished_loglik[index]


class _SequenceSearch:
    """RAG-Sequence candidates: each fact's own beam search on p(y|x,d); rows are fact 0's beams, then fact 1's, ..."""

    def __init__(self, per_fact: list[Beams], prior: torch.Tensor) -> None:
        self.per_fact, self.prior = per_fact, prior  # prior (K,)

    @property
    def rows(self) -> int:
        return sum(len(beams.tokens) for beams in self.per_fact)

    @property
    def trie(self) -> Trie | None:
        return self.per_fact[0].trie

    def choices(self) -> list[list[int]] | None:
        """The allowed next tokens of each row (its hypothesis's); None without a trie."""
        if self.trie is None:
            return None
        return [tokens for beams in self.per_fact for tokens in beams.choices() or ()]  # all have self.trie

    def advance(self, logprobs: torch.Tensor, choices: torch.Tensor | None) -> tuple[torch.Tensor, list[list[int]]]:
        """As _TokenSearch.advance, each fact's beams on its own rows' log-probs (R, C) and choices (R, C)."""
        rows: list[torch.Tensor] = []
        feeds: list[list[int]] = []
        offset = 0
        for beams in self.per_fact:
            alive = len(beams.tokens)
            if alive:
                window = slice(offset, offset + alive)
                step = beams.advance(logprobs[window], None if choices is None else choices[window])  # (N,) each
                kept, chains = beams.force()  # (A',)
                rows.append(step.parents[: step.n_alive][kept] + offset)
                tokens = step.tokens[: step.n_alive][kept].tolist()
                feeds.extend([token] + chain for token, chain in zip(tokens, chains, strict=True))
                offset += alive
        return torch.cat(rows), feeds

    def candidates(self) -> list[Hyp]:
        """The distinct finished hypotheses (by scored tokens) of every fact's best `width`."""
        distinct: dict[tuple[int, ...], Hyp] = {}
        for beams in self.per_fact:
            for hyp in beams.best(beams.width):
                distinct.setdefault(tuple(hyp.ids), hyp)
        return list(distinct.values())


class RagGenerator:
    """Generates and scores answers to questions from their retrieved facts with the exact RAG marginal."""

    def __init__(self, lm: LoadedLM, instruction: str | None = None) -> None:
        self.lm = lm
        self.name = lm.name
        self.scorer = FactScorer(lm.model, lm.tokenizer, instruction or DEFAULT_INSTRUCTION)
        self.eos_id = lm.tokenizer.eos_token_id
        texts = lm.tokenizer.batch_decode([[i] for i in range(len(lm.tokenizer))])
        newlines = {i for i, text in enumerate(texts) if "\n" in text and not text.strip()}
        self.stop_ids = {self.eos_id} | newlines  # an entity name ends at EOS or at the end of its line

    def generate(self, requests: list[RagRequest]) -> list[RagResult]:
        """Answer every request; all of them decode together, one forward pass per step over all their rows."""
        if not requests:
            return []
        for request in requests:
            _check(request)
        state = self.scorer.start_batch([r.question for r in requests], [r.facts for r in requests])
        searches = [self._search(request) for request in requests]
        sequence = {i: search for i, search in enumerate(searches) if isinstance(search, _SequenceSearch)}
        groups = [[i for i, search in sequence.items() if (search.trie is None) == free] for free in (True, False)]
        first_row = torch.tensor([0] + [len(r.facts) for r in requests]).cumsum(0).tolist()  # (Q+1,)
        prompts = [  # each group's prompt rows, kept for rescoring: unconstrained searches, then constrained ones
            (
                group,
                self.scorer.select_rows(
                    state, torch.cat([torch.arange(first_row[i], first_row[i + 1]) for i in group])
                ),
            )
            for group in groups
            if group
        ]
        self._decode(state, searches)
        results = {i: self._token_result(s) for i, s in enumerate(searches) if isinstance(s, _TokenSearch)}
        for group, rows in prompts:
            results.update(zip(group, self._rescore([sequence[i] for i in group], rows), strict=True))
        return [results[i] for i in range(len(requests))]

    def score(
        self,
        question: str,
        facts: list[str],
        log_priors: list[float],
        answer: str | Sequence[int],
        allowed_answers: list[str] | None = None,
    ) -> RagResult:
        """log p(y|x) of a given answer and each fact's share. A text is scored as the model would
        write it after the answer cue, followed by EOS; token ids (e.g. a result's token_ids) as given.
        With allowed_answers, as constrained decoding scores it (renormalised over the names' trie);
        the answer must then be one of the names, or a start of one."""
        _check(RagRequest(question, facts, log_priors, allowed_answers=allowed_answers))
        ids = self.scorer.answer_token_ids(answer) + [self.eos_id] if isinstance(answer, str) else list(answer)
        choices = None if allowed_answers is None else [path_choices(self._trie(allowed_answers), ids)]
        scores = self.scorer.score_answers(question, facts, [ids], choices)  # (K, 1, T)
        loglik = sequence_loglik(scores.token_logprobs[None, :, 0], scores.mask[:1])[0]  # (K,)
        return self._result(ids, _prior(log_priors), loglik, new_tokens=0)

    @torch.inference_mode()
    def generate_naive(self, request: RagRequest) -> RagResult:
        """Reference: one HF `generate` per fact (no sharing, no marginal while decoding), then every
        distinct answer rescored under every fact by full forward passes, ranked by log p(y|x)."""
        _check(request)
        prompt = self.scorer.build_prompt(request.question, request.facts)
        trie = self._request_trie(request)
        candidates: dict[tuple[int, ...], Hyp] = {}
        for suffix in prompt.suffixes:
            ids = torch.tensor([prompt.prefix + suffix], device=self.scorer.device)  # (1, C)
            start = ids.shape[1]  # bound as the lambda's default: each fact's prompt has its own length
            allowed = None if trie is None else (lambda _, seq, start=start: trie.get(tuple(seq[start:].tolist()), []))
            beams = {"num_beams": request.num_beams, "length_penalty": 0.0} if request.num_beams > 1 else {}
            out = self.lm.model.generate(  # type: ignore[operator]  # PreTrainedModel does not declare generate
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=_max_steps(request, trie),
                do_sample=False,
                eos_token_id=sorted(self.stop_ids),
                pad_token_id=self.eos_id,
                prefix_allowed_tokens_fn=allowed,
                **beams,
            )  # (1, C + N)
            hyp = self._cut(out[0, ids.shape[1] :].tolist())
            candidates.setdefault(tuple(hyp.ids), hyp)
        hyps = list(candidates.values())
        choices = None if trie is None else [path_choices(trie, hyp.ids) for hyp in hyps]
        scores = self.scorer.score_answers_naive(request.question, request.facts, [h.ids for h in hyps], choices)
        loglik = sequence_loglik(scores.token_logprobs.transpose(0, 1), scores.mask)  # (N, K)
        return self._best_of(hyps, _prior(request.log_priors), loglik)

    def _search(self, request: RagRequest) -> _TokenSearch | _SequenceSearch:
        """The search of one request, on the scorer's device."""
        trie = self._request_trie(request)
        prior = _prior(request.log_priors).to(self.scorer.device)  # (K,)
        steps = _max_steps(request, trie)
        if request.mode == "token":
            return _TokenSearch(Beams(request.num_beams, steps, self.stop_ids, trie), prior)
        return _SequenceSearch([Beams(request.num_beams, steps, self.stop_ids, trie) for _ in request.facts], prior)

    def _request_trie(self, request: RagRequest) -> Trie | None:
        """The trie of the request's allowed answers; None for free generation."""
        return None if request.allowed_answers is None else self._trie(request.allowed_answers)

    def _trie(self, names: list[str]) -> Trie:
        """The names' token trie, each name followed by EOS; blank names left out."""
        return build_trie(self.scorer.answer_token_ids(name) + [self.eos_id] for name in names if name.strip())

    def _decode(self, state: DecodeState, searches: list[_TokenSearch | _SequenceSearch]) -> None:
        """Run every search to its end; each step is one forward pass over all searches' rows.

        A step feeds each row its chosen token and the tokens its trie forces after it, so a
        constrained name usually takes one pass after its first token, not one per token."""
        while True:
            rows, feeds, offset = [], [], 0
            for search, (logprobs, choices) in zip(searches, self._step_logprobs(state, searches), strict=True):
                count = search.rows
                if logprobs is not None:  # None: a finished search, no rows
                    parents, extensions = search.advance(logprobs, choices)  # (N,), N lists
                    rows.append(parents + offset)
                    feeds.extend(extensions)
                    offset += count
            index = torch.cat(rows) if rows else torch.empty(0, dtype=torch.long)  # (R',)
            if index.numel() == 0:
                return
            if not torch.equal(index, torch.arange(state.hidden.shape[0])):
                state = self.scorer.select_rows(state, index)
            self.scorer.append(state, feeds)

    def _step_logprobs(
        self, state: DecodeState, searches: list[_TokenSearch | _SequenceSearch]
    ) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
        """Each search's next-token log-probs, for its rows of state in order: (rows, V) without a trie;
        under one, (rows, C) over each row's allowed tokens, with their ids (rows, C); None for a finished
        search. All the rows of one kind share one projection."""
        vocab_rows: list[int] = []
        choice_rows: list[int] = []
        spans, choices, offset = [], [], 0
        for search in searches:
            span, allowed = list(range(offset, offset + search.rows)), search.choices()
            (vocab_rows if allowed is None else choice_rows).extend(span)
            choices.extend(allowed or [])
            spans.append((len(span), allowed is not None))
            offset += len(span)
        device = state.hidden.device
        if vocab_rows:
            vocab = self.scorer.logprobs(state.hidden[torch.tensor(vocab_rows, device=device)])  # (R_v, V)
        if choice_rows:
            chosen, ids = self.scorer.choice_logprobs(state.hidden[torch.tensor(choice_rows, device=device)], choices)
        out: list[tuple[torch.Tensor | None, torch.Tensor | None]] = []
        v = c = 0
        for count, constrained in spans:
            if not count:
                out.append((None, None))  # a finished search: nothing to score
            elif constrained:
                out.append((chosen[c : c + count], ids[c : c + count]))
            else:
                out.append((vocab[v : v + count], None))
            c, v = (c + count, v) if constrained else (c, v + count)
        return out

    def _token_result(self, search: _TokenSearch) -> RagResult:
        hyp, loglik = search.best()
        return self._result(hyp.ids, search.prior, loglik, len(hyp.ids))

    def _rescore(self, searches: list[_SequenceSearch], prompts: DecodeState) -> list[RagResult]:
        """Rescore every search's candidates under all of its facts (one batch for all), keep each best.
        The searches are all constrained (each candidate scored within its trie) or none is."""
        candidates = [search.candidates() for search in searches]
        rows, offset = [], 0  # rows into prompts: each search's K facts, search after search
        continuations: list[list[int]] = []
        for search, hyps in zip(searches, candidates, strict=True):
            k = search.prior.numel()
            rows.append(torch.arange(offset, offset + k).repeat_interleave(len(hyps)))  # fact-major, (K*N,)
            continuations.extend(hyp.ids for _ in range(k) for hyp in hyps)
            offset += k
        choices: list[list[list[int]]] | None = None  # per continuation token: the allowed tokens after those before
        if searches[0].trie is not None:
            choices = []
            for s, hyps in zip(searches, candidates, strict=True):
                assert s.trie is not None  # all constrained (above)
                choices.extend(path_choices(s.trie, hyp.ids) for _ in range(s.prior.numel()) for hyp in hyps)
        token_lp, mask = self.scorer.continuation_logprobs(prompts, torch.cat(rows), continuations, choices)
        results, start = [], 0
        for search, hyps in zip(searches, candidates, strict=True):
            k, n = search.prior.numel(), len(hyps)
            block = token_lp[start : start + k * n].view(k, n, -1).transpose(0, 1)  # (N, K, T)
            loglik = sequence_loglik(block, mask[start : start + n])  # (N, K)
            results.append(self._best_of(hyps, search.prior, loglik))
            start += k * n
        return results

    def _best_of(self, hyps: list[Hyp], prior: torch.Tensor, loglik: torch.Tensor) -> RagResult:
        """The candidate with the highest log p(y|x), from each one's log p(y|x,d) (N, K)."""
        marginal = sequence_marginal(prior[None].to(loglik.device), loglik)  # (N,)
        best = int(marginal.argmax())
        return self._result(hyps[best].ids, prior, loglik[best], len(hyps[best].ids))

    def _result(self, ids: list[int], prior: torch.Tensor, loglik: torch.Tensor, new_tokens: int) -> RagResult:
        """The result for the scored tokens ids, from the prior (K,) and their log p(y|x,d) (K,)."""
        answer = self._cut(ids)
        prior, loglik = prior[None].cpu(), loglik[None].cpu()  # (1, K)
        posterior = doc_posterior(prior, loglik)[0]  # (K,)
        shares = [
            FactShare(k, float(prior[0, k]), float(loglik[0, k]), float(posterior[k])) for k in range(prior.shape[1])
        ]
        return RagResult(
            # decode() of one sequence is a str, typed str | list[str] by transformers
            answer=self.lm.tokenizer.decode(answer.tokens, skip_special_tokens=True).strip(),  # type: ignore[union-attr]
            token_ids=ids,
            log_prob=float(sequence_marginal(prior, loglik)[0]),
            facts=shares,
            new_tokens=new_tokens,
            complete=answer.stop is not None,
        )

    def _cut(self, generated: list[int]) -> Hyp:
        """Tokens as a hypothesis: the answer up to the first stop token, and that token (anything after it dropped)."""
        for i, token in enumerate(generated):
            if token in self.stop_ids:
                return Hyp(generated[:i], token, 0.0)
        return Hyp(generated, None, 0.0)


def _check(request: RagRequest) -> None:
    """Raise ValueError for a request that cannot be decoded."""
    if not request.facts or len(request.log_priors) != len(request.facts):
        raise ValueError("need at least one fact, and one log prior per fact")
    if not any(math.isfinite(p) for p in request.log_priors) or any(math.isnan(p) for p in request.log_priors):
        raise ValueError("log priors must not be NaN, and at least one must be finite")
    if request.mode not in ("token", "sequence"):
        raise ValueError(f"mode must be 'token' or 'sequence', not {request.mode!r}")
    if request.num_beams < 1 or request.max_new_tokens < 1:
        raise ValueError("num_beams and max_new_tokens must be at least 1")
    if request.allowed_answers is not None and not any(name.strip() for name in request.allowed_answers):
        raise ValueError("allowed_answers needs at least one name (None: free generation)")


def _prior(log_priors: Sequence[float]) -> torch.Tensor:
    """log p(d|x) (K,), renormalised."""
    return torch.tensor(log_priors, dtype=torch.float32).log_softmax(-1)  # (K,)


def _max_steps(request: RagRequest, trie: Trie | None) -> int:
    """max_new_tokens, raised under a trie so that the longest allowed name and its EOS always fit."""
    return max(request.max_new_tokens, longest_path(trie))
