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
rows of one DecodeState, and each step is one forward pass over all of them.

constrain=True masks every step (the marginal in token mode, each fact's rows in sequence mode)
to a token trie of the allowed names, tokenized as written after the answer cue and each followed
by EOS; the step limit rises to fit the longest. Masked log-probs are not renormalised, so log_prob
stays the exact marginal. The full output projection is still computed: p(y_t|x,d,y<t) is
normalised over the whole vocabulary, so the allowed tokens' logits alone cannot give it.
In greedy decoding, where the trie leaves one token only (the rest of a name once its first
tokens set it apart), that token is fed without waiting for its log-probs, in the same pass as
the chosen one, and scored from that pass's outputs: the same search and scores in fewer passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from generator_service.fact_scoring import DEFAULT_INSTRUCTION, DecodeState, FactScorer
from generator_service.lm_loading import LoadedLM
from generator_service.marginalize import (
    doc_posterior,
    sequence_loglik,
    sequence_marginal,
    token_marginal,
    update_doc_logprobs,
)

Trie = dict[tuple[int, ...], list[int]]  # token prefix -> allowed next tokens


@dataclass
class RagRequest:
    question: str
    facts: list[str]  # fact sentences, e.g. "France capital Paris"
    log_priors: list[float]  # log p(d|x), one per fact; renormalised, so proportional is enough
    mode: Literal["token", "sequence"] = "token"
    max_new_tokens: int = 16  # stop token included; constrained decoding raises it to the longest allowed name
    num_beams: int = 1
    constrain: bool = False
    allowed_answers: list[str] | None = None  # entity names from the retrieved facts; used when constrain=True


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


@dataclass
class _Hyp:
    tokens: list[int]  # answer tokens, without the stop token
    stop: int | None  # the token that ended it, None when cut at the step limit
    score: float  # accumulated log-prob, the stop token included

    @property
    def ids(self) -> list[int]:
        """The scored tokens: the answer and its stop token."""
        return self.tokens + ([] if self.stop is None else [self.stop])


class _Beams:
    """One beam search on accumulated log-probs: up to `width` alive hypotheses, plus the finished ones.

    Each step ranks the top 2*width extensions; a stop token among the first `width` finishes a
    hypothesis, the best `width` others stay alive. A hypothesis ends at the step limit (its
    length, stop token included); the search ends when none is alive, or as soon as the best
    finished score is at least the best alive one (scores only go down). width=1 is greedy decoding.
    Under a trie, `force` appends the tokens a hypothesis has no choice about; the caller adds
    their scores (`add_scores`) once the forward pass that feeds them has given their log-probs.
    """

    def __init__(self, width: int, max_steps: int, stop_ids: set[int], trie: Trie | None) -> None:
        self.width, self.max_steps, self.stop_ids, self.trie = width, max_steps, stop_ids, trie
        self.tokens: list[list[int]] = [[]]  # alive hypotheses
        self.scores: list[float] = [0.0]
        self.finished: list[_Hyp] = []

    def advance(self, step_logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Extend the alive hypotheses by one token, given their next-token log-probs (A, V).

        Returns the chosen (parent, token) pairs as two (N,) tensors: the first n_alive are the new
        alive hypotheses, the others were appended to `finished`, in order.
        """
        scores = torch.tensor(self.scores, device=step_logprobs.device)  # (A,)
        alive, ended = self._rank(scores[:, None] + self._allowed(step_logprobs))  # total (A, V)
        ended += [hyp for hyp in alive if len(self.tokens[hyp[0]]) + 1 >= self.max_steps]  # cut at the step limit
        alive = [hyp for hyp in alive if len(self.tokens[hyp[0]]) + 1 < self.max_steps]
        best_finished = max([hyp.score for hyp in self.finished] + [score for *_, score in ended], default=-math.inf)
        if alive and best_finished >= alive[0][2]:
            alive = []  # scores only go down: no alive hypothesis can overtake the best finished one
        for parent, token, score in ended:
            stop = token if token in self.stop_ids else None
            self.finished.append(_Hyp(self.tokens[parent] + ([token] if stop is None else []), stop, score))
        self.tokens = [self.tokens[parent] + [token] for parent, token, _ in alive]
        self.scores = [score for *_, score in alive]
        pairs = [(parent, token) for parent, token, _ in alive + ended]
        chosen = torch.tensor(pairs, dtype=torch.long, device=step_logprobs.device).view(-1, 2)  # (N, 2)
        return chosen[:, 0], chosen[:, 1], len(alive)

    def force(self) -> list[list[int]]:
        """Append to each alive hypothesis the tokens its trie node forces (a single allowed token that
        is not a stop token), within the step limit; return them, one list per hypothesis. Greedy
        only: with wider beams, hypotheses of unequal lengths would compete and the search would change."""
        chains = []
        for tokens in self.tokens:
            chain = []
            while self.trie is not None and self.width == 1 and len(tokens) + 1 < self.max_steps:
                allowed = self.trie.get(tuple(tokens), [])
                if len(allowed) != 1 or allowed[0] in self.stop_ids:
                    break
                tokens.append(allowed[0])
                chain.append(allowed[0])
            chains.append(chain)
        return chains

    def add_scores(self, added: torch.Tensor) -> None:
        """Add the log-probs of the tokens force appended (A,) to the alive hypotheses' scores."""
        self.scores = [score + float(extra) for score, extra in zip(self.scores, added.tolist(), strict=True)]

    def _rank(self, total: torch.Tensor) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
        """(parent, token, score) of the best extensions, from their scores (A, V): up to `width` that go
        on, and those among the first `width` that end at a stop token."""
        top = total.flatten().topk(min(2 * self.width, total.numel()))
        alive, ended = [], []
        for rank, (score, flat) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            if score == -math.inf:
                break
            parent, token = divmod(flat, total.shape[1])
            if token not in self.stop_ids:
                if len(alive) < self.width:
                    alive.append((parent, token, score))
            elif rank < self.width:
                ended.append((parent, token, score))
        return alive, ended

    def best(self, n: int = 1) -> list[_Hyp]:
        """The n best finished hypotheses, best first."""
        return sorted(self.finished, key=lambda hyp: -hyp.score)[:n]

    def _allowed(self, step_logprobs: torch.Tensor) -> torch.Tensor:
        """step_logprobs (A, V) with -inf outside each hypothesis's allowed next tokens (no trie: all)."""
        if self.trie is None:
            return step_logprobs
        mask = torch.full_like(step_logprobs, -math.inf)  # (A, V)
        for row, tokens in enumerate(self.tokens):
            mask[row, self.trie.get(tuple(tokens), [])] = 0.0
        return step_logprobs + mask  # (A, V)


class _TokenSearch:
    """RAG-Token: one beam search on the marginal sum_d p(d|x,y<t) p(y_t|x,d,y<t); beam b, fact k is row b*K + k."""

    def __init__(self, beams: _Beams, prior: torch.Tensor) -> None:
        self.beams, self.prior = beams, prior  # prior (K,)
        self.doc = prior[None]  # (A, K) log p(d|x,y<t)
        self.loglik = torch.zeros_like(self.doc)  # (A, K) log p(y<t|x,d)
        self.finished_loglik: list[torch.Tensor] = []  # (K,) per finished hypothesis, as beams.finished

    @property
    def rows(self) -> int:
        return len(self.beams.tokens) * self.prior.numel()

    def advance(self, logprobs: torch.Tensor, forced: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
        """One step from this search's rows' log-probs (A*K, V), after scoring the tokens the last pass
        fed without a choice (A*K, F), forced[r, j] = 0 when row r had fewer; returns its next rows
        (parents) and, per row, the tokens to feed: the chosen one, then those the trie forces."""
        k = self.prior.numel()
        self._add_forced(forced.view(len(self.beams.tokens), k, forced.shape[-1]))  # (A, K, F)
        per_fact = logprobs.view(-1, k, logprobs.shape[-1])  # (A, K, V)
        parents, tokens, n_alive = self.beams.advance(token_marginal(self.doc, per_fact))  # (N,), (N,)
        chosen = per_fact[parents, :, tokens]  # (N, K) log p(y_t|x,d,y<t)
        loglik = self.loglik[parents] + chosen  # (N, K)
        self.finished_loglik.extend(loglik[n_alive:])
        self.doc = update_doc_logprobs(self.doc[parents[:n_alive]], chosen[:n_alive])  # (A', K)
        self.loglik = loglik[:n_alive]  # (A', K)
        rows = parents[:n_alive, None] * k + torch.arange(k, device=parents.device)  # (A', K)
        feeds = [[token] + chain for token, chain in zip(tokens[:n_alive].tolist(), self.beams.force())]
        return rows.flatten(), [feed for feed in feeds for _ in range(k)]

    def _add_forced(self, forced: torch.Tensor) -> None:
        """Score forced tokens (A, K, F) on the marginal, as advance scores chosen ones; 0 under every fact is padding."""
        for j in range(forced.shape[-1]):
            chosen = forced[..., j]  # (A, K) log p(y_t|x,d,y<t)
            real = chosen.ne(0).any(-1)  # (A,)
            self.beams.add_scores(torch.logsumexp(self.doc + chosen, dim=-1).where(real, 0.0))  # (A,)
            self.doc = torch.where(real[:, None], update_doc_logprobs(self.doc, chosen), self.doc)  # (A, K)
            self.loglik = self.loglik + chosen  # (A, K)

    def best(self) -> tuple[_Hyp, torch.Tensor]:
        """The best finished hypothesis and its log p(y|x,d) (K,)."""
        index = max(range(len(self.beams.finished)), key=lambda i: self.beams.finished[i].score)
        return self.beams.finished[index], self.finished_loglik[index]


class _SequenceSearch:
    """RAG-Sequence candidates: each fact's own beam search on p(y|x,d); rows are fact 0's beams, then fact 1's, ..."""

    def __init__(self, per_fact: list[_Beams], prior: torch.Tensor) -> None:
        self.per_fact, self.prior = per_fact, prior  # prior (K,)

    @property
    def rows(self) -> int:
        return sum(len(beams.tokens) for beams in self.per_fact)

    def advance(self, logprobs: torch.Tensor, forced: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
        """As _TokenSearch.advance, each fact's beams on its own rows' log-probs (R, V) and forced tokens' (R, F)."""
        rows, feeds, offset = [], [], 0
        for beams in self.per_fact:
            alive = len(beams.tokens)
            if alive:
                beams.add_scores(forced[offset : offset + alive].sum(-1))  # (A,)
                parents, chosen, n_alive = beams.advance(logprobs[offset : offset + alive])  # (N,), (N,)
                rows.append(parents[:n_alive] + offset)
                feeds.extend([token] + chain for token, chain in zip(chosen[:n_alive].tolist(), beams.force()))
                offset += alive
        return torch.cat(rows), feeds

    def candidates(self) -> list[_Hyp]:
        """The distinct finished hypotheses (by scored tokens) of every fact's best `width`."""
        distinct = {}
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
        sequence = [i for i, search in enumerate(searches) if isinstance(search, _SequenceSearch)]
        first_row = torch.tensor([0] + [len(r.facts) for r in requests]).cumsum(0)  # (Q+1,)
        prompt_rows = [torch.arange(first_row[i], first_row[i + 1]) for i in sequence]
        prompts = self.scorer.select_rows(state, torch.cat(prompt_rows)) if sequence else None  # kept for rescoring
        self._decode(state, searches)
        results = {i: self._token_result(s) for i, s in enumerate(searches) if isinstance(s, _TokenSearch)}
        if prompts is not None:
            results.update(zip(sequence, self._rescore([searches[i] for i in sequence], prompts)))
        return [results[i] for i in range(len(requests))]

    def score(
        self,
        question: str,
        facts: list[str],
        log_priors: list[float],
        answer: str | Sequence[int],
    ) -> RagResult:
        """log p(y|x) of a given answer and each fact's share. A text is scored as the model would
        write it after the answer cue, followed by EOS; token ids (e.g. a result's token_ids) as given."""
        _check(RagRequest(question, facts, log_priors))
        ids = self.scorer.answer_token_ids(answer) + [self.eos_id] if isinstance(answer, str) else list(answer)
        scores = self.scorer.score_answers(question, facts, [ids])  # (K, 1, T)
        loglik = sequence_loglik(scores.token_logprobs[None, :, 0], scores.mask[:1])[0]  # (K,)
        return self._result(ids, _prior(log_priors), loglik, new_tokens=0)

    @torch.inference_mode()
    def generate_naive(self, request: RagRequest) -> RagResult:
        """Reference: one HF `generate` per fact (no sharing, no marginal while decoding), then every
        distinct answer rescored under every fact by full forward passes, ranked by log p(y|x)."""
        _check(request)
        prompt = self.scorer.build_prompt(request.question, request.facts)
        trie = self._trie(request)
        candidates = {}
        for suffix in prompt.suffixes:
            ids = torch.tensor([prompt.prefix + suffix], device=self.scorer.device)  # (1, C)
            allowed = None if trie is None else (lambda _, seq: trie.get(tuple(seq[ids.shape[1] :].tolist()), []))
            beams = {"num_beams": request.num_beams, "length_penalty": 0.0} if request.num_beams > 1 else {}
            out = self.lm.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=_max_steps(request, trie), do_sample=False,
                eos_token_id=sorted(self.stop_ids), pad_token_id=self.eos_id, prefix_allowed_tokens_fn=allowed, **beams,
            )  # (1, C + N)
            hyp = self._cut(out[0, ids.shape[1] :].tolist())
            candidates.setdefault(tuple(hyp.ids), hyp)
        hyps = list(candidates.values())
        scores = self.scorer.score_answers_naive(request.question, request.facts, [h.ids for h in hyps])  # (K, N, T)
        loglik = sequence_loglik(scores.token_logprobs.transpose(0, 1), scores.mask)  # (N, K)
        return self._best_of(hyps, _prior(request.log_priors), loglik)

    def _search(self, request: RagRequest) -> _TokenSearch | _SequenceSearch:
        """The search of one request, on the scorer's device."""
        trie = self._trie(request)
        prior = _prior(request.log_priors).to(self.scorer.device)  # (K,)
        steps = _max_steps(request, trie)
        if request.mode == "token":
            return _TokenSearch(_Beams(request.num_beams, steps, self.stop_ids, trie), prior)
        return _SequenceSearch([_Beams(request.num_beams, steps, self.stop_ids, trie) for _ in request.facts], prior)

    def _trie(self, request: RagRequest) -> Trie | None:
        """The allowed answers' token trie, each name followed by EOS; None when not constrained."""
        if not request.constrain:
            return None
        trie: Trie = {}
        for name in request.allowed_answers or []:
            ids = self.scorer.answer_token_ids(name) + [self.eos_id]
            for i, token in enumerate(ids if name.strip() else []):
                allowed = trie.setdefault(tuple(ids[:i]), [])
                if token not in allowed:
                    allowed.append(token)
        return trie

    def _decode(self, state: DecodeState, searches: list[_TokenSearch | _SequenceSearch]) -> None:
        """Run every search to its end; each step is one forward pass over all searches' rows.

        A step feeds each row its chosen token and the tokens its trie forces after it, so a
        constrained name usually takes one pass after its first token, not one per token."""
        forced = state.logprobs.new_zeros(state.logprobs.shape[0], 0)  # (R, F): nothing forced yet
        while True:
            rows, feeds, offset = [], [], 0
            for search in searches:
                count = search.rows
                if count:
                    window = slice(offset, offset + count)
                    parents, extensions = search.advance(state.logprobs[window], forced[window])  # (N,), N lists
                    rows.append(parents + offset)
                    feeds.extend(extensions)
                    offset += count
            index = torch.cat(rows) if rows else torch.empty(0, dtype=torch.long)  # (R',)
            if index.numel() == 0:
                return
            if not torch.equal(index, torch.arange(state.logprobs.shape[0], device=index.device)):
                state = self.scorer.select_rows(state, index)
            forced = self.scorer.append(state, feeds)  # (R', F')

    def _token_result(self, search: _TokenSearch) -> RagResult:
        hyp, loglik = search.best()
        return self._result(hyp.ids, search.prior, loglik, len(hyp.ids))

    def _rescore(self, searches: list[_SequenceSearch], prompts: DecodeState) -> list[RagResult]:
        """Rescore every search's candidates under all of its facts (one batch for all), keep each best."""
        candidates = [search.candidates() for search in searches]
        rows, continuations, offset = [], [], 0  # rows into prompts: each search's K facts, search after search
        for search, hyps in zip(searches, candidates):
            k = search.prior.numel()
            rows.append(torch.arange(offset, offset + k).repeat_interleave(len(hyps)))  # fact-major, (K*N,)
            continuations.extend(hyp.ids for _ in range(k) for hyp in hyps)
            offset += k
        token_lp, mask = self.scorer.continuation_logprobs(prompts, torch.cat(rows), continuations)  # (M, T) each
        results, start = [], 0
        for search, hyps in zip(searches, candidates):
            k, n = search.prior.numel(), len(hyps)
            block = token_lp[start : start + k * n].view(k, n, -1).transpose(0, 1)  # (N, K, T)
            loglik = sequence_loglik(block, mask[start : start + n])  # (N, K)
            results.append(self._best_of(hyps, search.prior, loglik))
            start += k * n
        return results

    def _best_of(self, hyps: list[_Hyp], prior: torch.Tensor, loglik: torch.Tensor) -> RagResult:
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
            answer=self.lm.tokenizer.decode(answer.tokens, skip_special_tokens=True).strip(),
            token_ids=ids,
            log_prob=float(sequence_marginal(prior, loglik)[0]),
            facts=shares,
            new_tokens=new_tokens,
            complete=answer.stop is not None,
        )

    def _cut(self, generated: list[int]) -> _Hyp:
        """Tokens as a hypothesis: the answer up to the first stop token, and that token (anything after it dropped)."""
        for i, token in enumerate(generated):
            if token in self.stop_ids:
                return _Hyp(generated[:i], token, 0.0)
        return _Hyp(generated, None, 0.0)


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
    if request.constrain and not any(name.strip() for name in request.allowed_answers or []):
        raise ValueError("constrain=True needs at least one allowed answer")


def _prior(log_priors: Sequence[float]) -> torch.Tensor:
    """log p(d|x) (K,), renormalised."""
    return torch.tensor(log_priors, dtype=torch.float32).log_softmax(-1)  # (K,)


def _max_steps(request: RagRequest, trie: Trie | None) -> int:
    """max_new_tokens, raised under a trie so that the longest allowed name and its EOS always fit."""
    longest = max((len(prefix) + 1 for prefix in trie), default=0) if trie else 0
    return max(request.max_new_tokens, longest)
