"""Beam search on accumulated log-probs, and the token trie that constrains it; no model here.

A search keeps up to `width` alive hypotheses and the finished ones. Each step it is given the
alive hypotheses' next-token log-probs (over the vocabulary, or over the tokens a trie allows after
each of them) and keeps the best extensions; a stop token finishes a hypothesis, and so does the
step limit. width=1 is greedy decoding. The caller computes the log-probs (rag.py mixes the facts'
distributions into the RAG marginal first).

A trie maps each token prefix of the allowed answers to the tokens allowed after it; every answer
ends with a stop token (EOS), so a path through the trie is a whole answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

Trie = dict[tuple[int, ...], list[int]]  # token prefix -> allowed next tokens


def build_trie(answers: Iterable[Sequence[int]]) -> Trie:
    """The trie of the answers' token ids (each ending with its stop token); empty answers add nothing."""
    trie: Trie = {}
    for ids in answers:
        for i, token in enumerate(ids):
            allowed = trie.setdefault(tuple(ids[:i]), [])
            if token not in allowed:
                allowed.append(token)
    return trie


def path_choices(trie: Trie, ids: Sequence[int]) -> list[list[int]]:
    """The tokens the trie allows at each position of ids; ValueError when ids leave the trie."""
    choices = [trie.get(tuple(ids[:t]), []) for t in range(len(ids))]
    if any(token not in allowed for token, allowed in zip(ids, choices, strict=True)):
        raise ValueError("the answer is not one of the allowed names")
    return choices


def longest_path(trie: Trie | None) -> int:
    """Tokens on the trie's longest path (its longest answer, stop token included); 0 without a trie."""
    return max((len(prefix) + 1 for prefix in trie), default=0) if trie else 0


class Step(NamedTuple):
    """The extensions one beam-search step chose, as (N,) tensors: the first n_alive go on, the rest ended."""

    parents: torch.Tensor  # the alive hypothesis each extends
    columns: torch.Tensor  # its column in the step's log-probs (the token id when they span the vocabulary)
    tokens: torch.Tensor  # its token id
    n_alive: int


@dataclass
class Hyp:
    """A hypothesis: its answer tokens, the stop token that ended it, and its accumulated log-prob."""

    tokens: list[int]  # answer tokens, without the stop token
    stop: int | None  # the token that ended it, None when cut at the step limit
    score: float  # accumulated log-prob, the stop token included

    @property
    def ids(self) -> list[int]:
        """The scored tokens: the answer and its stop token."""
        return self.tokens + ([] if self.stop is None else [self.stop])


class Beams:
    """One beam search on accumulated log-probs: up to `width` alive hypotheses, plus the finished ones.

    Each step ranks the top 2*width extensions; a stop token among the first `width` finishes a
    hypothesis, the best `width` others stay alive. A hypothesis ends at the step limit (its
    length, stop token included); the search ends when none is alive, or as soon as the best
    finished score is at least the best alive one (scores only go down). width=1 is greedy decoding.
    Under a trie a step ranks the allowed next tokens only (`choices`, their log-probs renormalised
    over them), and `force` appends the tokens a hypothesis has no choice about.
    """

    def __init__(self, width: int, max_steps: int, stop_ids: set[int], trie: Trie | None) -> None:
        self.width, self.max_steps, self.stop_ids, self.trie = width, max_steps, stop_ids, trie
        self.tokens: list[list[int]] = [[]]  # alive hypotheses
        self.scores: list[float] = [0.0]
        self.finished: list[Hyp] = []

    def advance(self, step_logprobs: torch.Tensor, choices: torch.Tensor | None) -> Step:
        """Extend the alive hypotheses by one token, given their next-token log-probs (A, C): over the
        vocabulary (choices None, C = V), or over each one's `choices()` with their ids (A, C), padding at -inf.

        The first n_alive extensions are the new alive hypotheses, the others were appended to `finished`.
        """
        scores = torch.tensor(self.scores, device=step_logprobs.device)  # (A,)
        alive, ended = self._rank(scores[:, None] + step_logprobs, choices)  # total (A, C)
        ended += [hyp for hyp in alive if len(self.tokens[hyp[0]]) + 1 >= self.max_steps]  # cut at the step limit
        alive = [hyp for hyp in alive if len(self.tokens[hyp[0]]) + 1 < self.max_steps]
        best_finished = max([hyp.score for hyp in self.finished] + [score for *_, score in ended], default=-math.inf)
        if alive and best_finished >= alive[0][-1]:
            alive = []  # scores only go down: no alive hypothesis can overtake the best finished one
        for parent, _, token, score in ended:
            stop = token if token in self.stop_ids else None
            self.finished.append(Hyp(self.tokens[parent] + ([token] if stop is None else []), stop, score))
        self.tokens = [self.tokens[parent] + [token] for parent, _, token, _ in alive]
        self.scores = [score for *_, score in alive]
        chosen = torch.tensor([hyp[:3] for hyp in alive + ended], dtype=torch.long).view(-1, 3)  # (N, 3)
        return Step(chosen[:, 0], chosen[:, 1], chosen[:, 2], len(alive))

    def choices(self) -> list[list[int]] | None:
        """The tokens the trie allows next, per alive hypothesis; None without a trie (any token)."""
        return None if self.trie is None else [self.trie.get(tuple(tokens), []) for tokens in self.tokens]

    def force(self) -> tuple[torch.Tensor, list[list[int]]]:
        """Append to each alive hypothesis the tokens its trie node forces (a single allowed token, of
        probability 1 once renormalised), within the step limit, and finish it there when that token
        is a stop token. Returns the indices of the hypotheses still alive (A',) and the tokens appended
        to each of them. Greedy only: with wider beams, hypotheses of unequal lengths would compete."""
        kept, chains = [], []
        for i, (tokens, score) in enumerate(zip(self.tokens, self.scores, strict=True)):
            chain, token = [], self._forced(tokens)
            while token is not None and token not in self.stop_ids:
                tokens.append(token)
                chain.append(token)
                token = self._forced(tokens)
            if token is None:
                kept.append(i)
                chains.append(chain)
            else:
                self.finished.append(Hyp(tokens, token, score))
        self.tokens = [self.tokens[i] for i in kept]
        self.scores = [self.scores[i] for i in kept]
        return torch.tensor(kept, dtype=torch.long), chains

    def _forced(self, tokens: list[int]) -> int | None:
        """The token the trie allows after tokens when it allows one only and the step limit leaves room."""
        if self.trie is None or self.width > 1:
            return None
        allowed = self.trie.get(tuple(tokens), [])
        room = self.max_steps - len(tokens)  # tokens the limit still admits, a stop token included
        if len(allowed) != 1 or room < 1 or (room == 1 and allowed[0] not in self.stop_ids):
            return None
        return allowed[0]

    def _rank(self, total: torch.Tensor, choices: torch.Tensor | None) -> tuple[list[tuple], list[tuple]]:
        """(parent, column, token, score) of the best extensions, from their scores (A, C) and the columns'
        token ids (A, C; None: the column is the token): up to `width` that go on, and those among the
        first `width` that end at a stop token."""
        top = total.flatten().topk(min(2 * self.width, total.numel()))
        alive: list[tuple] = []
        ended: list[tuple] = []
        for rank, (score, flat) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True)):
            if score == -math.inf:
                break
            parent, column = divmod(flat, total.shape[1])
            token = column if choices is None else int(choices[parent, column])
            if token not in self.stop_ids:
                if len(alive) < self.width:
                    alive.append((parent, column, token, score))
            elif rank < self.width:
                ended.append((parent, column, token, score))
        return alive, ended

    def best(self, n: int = 1) -> list[Hyp]:
        """The n best finished hypotheses, best first."""
        return sorted(self.finished, key=lambda hyp: -hyp.score)[:n]
