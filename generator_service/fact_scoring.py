"""Per-fact next-token log-probabilities for questions and their retrieved facts, sharing prompt prefixes.

Every fact's prompt is a head [instruction + a one-shot example], the same for every question; the
question line; the fact and the answer cue (prompt.py). The head's KV cache is computed once per
FactScorer. All questions' lines and fact suffixes then run in one forward pass, packed one row
per question (see start_batch), and are gathered into one row per fact: the head, the question
line, the fact suffix, then padding. A 2D attention mask hides the padding and explicit position
ids skip it, so it changes nothing. Answer tokens are then appended one step at a time (RAG
decoding, beams included) or all at once (scoring answers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from generator_service.batch_rows import real_positions, right_pad, select_cache_rows
from generator_service.prompt import DEFAULT_INSTRUCTION, PromptIds, answer_token_ids, build_prompt

_LOGPROB_POSITIONS = 512  # positions per chunk when scoring given tokens (answers, forced tokens)


@dataclass
class DecodeState:
    """R decoding rows (K facts, or beams*K), each a prompt plus the answer tokens appended so far.

    Rows are padded in the middle (after each fact suffix); attention_mask hides the padding.
    """

    cache: DynamicCache  # keys/values (R, heads, L, head_dim) per layer
    attention_mask: torch.Tensor  # (R, L) 1 = real token
    next_positions: torch.Tensor  # (R,) position id of the next appended token
    hidden: torch.Tensor  # (R, D) the last hidden state of each row, which the next token is predicted from


Choices = Sequence[Sequence[int]]  # per row (or scored position): the token ids a distribution is renormalised over


class AnswerScores(NamedTuple):
    token_logprobs: torch.Tensor  # (K, N, T) log p(y_t | question, fact k, y_<t) of answer n; 0 where padded
    mask: torch.Tensor  # (N, T) bool, True for real answer tokens


class FactScorer:
    """Scores and decodes answers conditioned on each of K facts, running the shared prefix once."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        instruction: str = DEFAULT_INSTRUCTION,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.instruction = instruction

    @property
    def device(self) -> torch.device:
        return self.model.device

    def build_prompt(self, question: str, facts: Sequence[str]) -> PromptIds:
        """The prompt of each fact (prompt.build_prompt) with this scorer's tokenizer and instruction."""
        return build_prompt(self.tokenizer, question, facts, self.instruction)

    def answer_token_ids(self, answer: str) -> list[int]:
        """The ids of an answer as the model writes it after the answer cue (prompt.answer_token_ids)."""
        return answer_token_ids(self.tokenizer, answer)

    @cached_property
    @torch.inference_mode()
    def _head(self) -> DecodeState:
        """The head's KV cache (one row), computed on first use; every start copies it."""
        head = torch.tensor([self.build_prompt("", []).head], device=self.device)  # (1, H)
        state = DecodeState(
            cache=DynamicCache(config=self.model.config),
            attention_mask=torch.zeros(1, 0, dtype=torch.long, device=self.device),  # (1, 0)
            next_positions=torch.zeros(1, dtype=torch.long, device=self.device),  # (1,)
            hidden=torch.empty(0),
        )
        state.hidden = self._extend(state, head, torch.tensor([head.shape[1]], device=self.device))[:, -1]  # (1, D)
        return state

    def start(self, question: str, facts: Sequence[str]) -> DecodeState:
        """One question's K rows (fact k in row k), ready for answer token 1."""
        return self.start_batch([question], [facts])

    @torch.inference_mode()
    def start_batch(self, questions: Sequence[str], facts: Sequence[Sequence[str]]) -> DecodeState:
        """Rows for every question's facts, question after question (sum of K_i rows), from one forward pass.

        After a copy of the cached head, each question's line and all its fact suffixes are packed
        into one row, [question | fact 1 | ... | fact K]; a 4D mask lets a suffix see only the head,
        its question and itself, and its position ids follow the question's, so every fact gets the
        keys and values of its own prompt, with no padding between suffixes. They are then gathered
        into one row per fact.
        """
        if not questions or any(not question_facts for question_facts in facts):
            raise ValueError("at least one question, and at least one fact per question, are needed")
        prompts = [self.build_prompt(q, question_facts) for q, question_facts in zip(questions, facts, strict=True)]
        packed = _Packed.of(prompts, self._head.attention_mask.shape[1], self.device)
        state = self.select_rows(self._head, torch.zeros(len(prompts), dtype=torch.long))
        mask = torch.zeros(packed.visible.shape, dtype=self.model.dtype, device=self.device)  # (Q, 1, N, H + N)
        mask.masked_fill_(~packed.visible, torch.finfo(self.model.dtype).min)  # additive: 0 or -inf-like
        out = self.model.base_model(
            input_ids=packed.ids,
            attention_mask=mask,  # 4D: used as given
            position_ids=packed.positions,
            cache=state.cache,
            use_cache=True,
        )
        return self._unpack(state, packed, out.last_hidden_state)  # hidden (Q, N, D)

    def _unpack(self, state: DecodeState, packed: _Packed, hidden: torch.Tensor) -> DecodeState:
        """One row per fact from the packed rows' cache (Q, heads, H + N, head_dim) and hidden states (Q, N, D)."""
        head_length, rows = state.attention_mask.shape[1], len(packed.lengths)
        head = torch.arange(head_length, device=self.device).expand(rows, -1)  # (R, H)
        positions = torch.cat([head, head_length + packed.slots], dim=1)  # (R, H + L) into the packed row
        flat = (packed.question_of[:, None] * (head_length + packed.ids.shape[1]) + positions).flatten()  # (R*(H+L),)
        layers = [(_take(keys, flat, rows), _take(values, flat, rows)) for keys, values, *_ in state.cache]
        ones = torch.ones(rows, head_length, dtype=torch.long, device=self.device)  # (R, H)
        return DecodeState(
            cache=DynamicCache(layers, config=self.model.config),
            attention_mask=torch.cat([ones, packed.real.long()], dim=1),  # (R, H + L)
            next_positions=head_length + packed.lengths,  # (R,)
            hidden=hidden[packed.question_of, packed.last],  # (R, D)
        )

    @torch.inference_mode()
    def logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token log-probs over the whole vocabulary (..., V), float32, from hidden states (..., D). The
        output embedding alone, as in Llama / SmolLM2: a model that scales or soft-caps its logits would need
        that here (and in choice_logprobs)."""
        return self.model.get_output_embeddings()(hidden).float().log_softmax(-1)  # (..., V)

    @torch.inference_mode()
    def choice_logprobs(self, hidden: torch.Tensor, choices: Choices) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(choices[r][c] | row r) renormalised over row r's choices, from hidden states (R, D): (R, C),
        -inf where a row has fewer than C; and the token ids of the columns (R, C), padded with id 0.
        Only the chosen tokens' rows of the output embedding are used."""
        ids, lengths = right_pad(choices, self.device)  # (R, C), (R,)
        weight = self.model.get_output_embeddings().weight[ids]  # (R, C, D)
        logits = torch.einsum("rd,rcd->rc", hidden, weight).float()  # (R, C)
        valid = real_positions(ids.shape[1], lengths)  # (R, C)
        return logits.masked_fill(~valid, -math.inf).log_softmax(-1), ids

    @torch.inference_mode()
    def step(self, state: DecodeState, token_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Append token_ids[r] to row r (in place) and return the next-token log-probs (R, V)."""
        self.append(state, [[int(token)] for token in torch.as_tensor(token_ids).view(-1).tolist()])
        return self.logprobs(state.hidden)

    @torch.inference_mode()
    def append(self, state: DecodeState, sequences: Sequence[Sequence[int]]) -> None:
        """Append sequences[r] (one token or more) to row r, in place, in one forward pass; state.hidden
        becomes each row's hidden state after its last token."""
        ids, lengths = right_pad(sequences, self.device)  # (R, T), (R,)
        hidden = self._extend(state, ids, lengths)  # (R, T, D)
        state.hidden = hidden[torch.arange(ids.shape[0], device=self.device), lengths - 1]  # (R, D)

    @torch.inference_mode()
    def select_rows(self, state: DecodeState, index: torch.Tensor) -> DecodeState:
        """A new state whose row i is state's row index[i] (the old state is left as is).

        For beams over K facts: expand with index = arange(K).repeat(B) (row b*K + k is beam b
        on fact k), then after each step reorder with index = parent_beam.repeat_interleave(K) * K
        + arange(K).repeat(B).
        """
        index = index.to(self.device)
        return DecodeState(
            cache=select_cache_rows(state.cache, index, self.model.config),
            attention_mask=state.attention_mask.index_select(0, index),
            next_positions=state.next_positions.index_select(0, index),
            hidden=state.hidden.index_select(0, index),
        )

    @torch.inference_mode()
    def score_answers(
        self,
        question: str,
        facts: Sequence[str],
        answer_token_ids: Sequence[Sequence[int]],
        choices: Sequence[Choices] | None = None,
    ) -> AnswerScores:
        """log p(y_t | question, fact k, y_<t) for every fact k and candidate answer n, in one batch of K*N rows;
        renormalised over choices[n][t] at answer n's token t when choices are given."""
        state = self.start(question, facts)
        k, n = len(facts), len(answer_token_ids)
        rows = torch.arange(k).repeat_interleave(n)  # (K*N,) row k*N + n
        per_row = None if choices is None else list(choices) * k
        token_lp, mask = self.continuation_logprobs(state, rows, list(answer_token_ids) * k, per_row)  # (K*N, T)
        return AnswerScores(token_lp.view(k, n, -1), mask[:n])

    @torch.inference_mode()
    def continuation_logprobs(
        self,
        state: DecodeState,
        rows: torch.Tensor,
        continuations: Sequence[Sequence[int]],
        choices: Sequence[Choices] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(c_t | row rows[m]'s tokens, c_<t) of continuation m after row rows[m] of state (left as is),
        over the whole vocabulary, or renormalised over choices[m][t] (one list per token of c) when given.

        Returns the token log-probs (M, T), 0 where padded, and the mask (M, T), True for real tokens.
        """
        ids, lengths = right_pad(continuations, self.device)  # (M, T), (M,)
        if int(lengths.min()) == 0:
            raise ValueError("every continuation needs at least one token")
        picked = self.select_rows(state, rows)
        mask = real_positions(ids.shape[1], lengths)  # (M, T)
        hidden = picked.hidden[:, None]  # (M, 1, D): predicts the first token
        if ids.shape[1] > 1:
            hidden = torch.cat([hidden, self._extend(picked, ids[:, :-1], lengths - 1)], dim=1)  # (M, T, D)
        flat = None if choices is None else [c for per_continuation in choices for c in per_continuation]
        return self._target_logprobs(hidden, ids, mask, flat), mask

    @torch.inference_mode()
    def score_answers_naive(
        self,
        question: str,
        facts: Sequence[str],
        answer_token_ids: Sequence[Sequence[int]],
        choices: Sequence[Choices] | None = None,
    ) -> AnswerScores:
        """Reference for score_answers: one full forward (batch 1, no cache sharing) per (fact, answer)."""
        prompt = self.build_prompt(question, facts)
        t = max(len(answer) for answer in answer_token_ids)
        scores = torch.zeros(len(facts), len(answer_token_ids), t, device=self.device)  # (K, N, T)
        mask = torch.zeros(len(answer_token_ids), t, dtype=torch.bool, device=self.device)  # (N, T)
        for k, suffix in enumerate(prompt.suffixes):
            context = prompt.prefix + suffix
            for n, answer in enumerate(answer_token_ids):
                ids = torch.tensor([context + list(answer)], device=self.device)  # (1, C + A)
                logits = self.model(input_ids=ids).logits[0, len(context) - 1 : -1].float()  # (A, V)
                if choices is not None:  # -inf outside each position's choices, then renormalised
                    allowed = torch.full_like(logits, -math.inf)  # (A, V)
                    for j, tokens in enumerate(choices[n]):
                        allowed[j, list(tokens)] = 0.0
                    logits = logits + allowed
                picked = logits.log_softmax(-1).gather(-1, ids[0, len(context) :, None])  # (A, 1)
                scores[k, n, : len(answer)] = picked[:, 0]
                mask[n, : len(answer)] = True
        return AnswerScores(scores, mask)

    def _extend(self, state: DecodeState, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Append right-padded ids (R, T) to every row (row r has lengths[r] real tokens); return the last
        hidden states (R, T, D), which the caller projects where needed.

        Updates the cache, the attention mask and the next positions in place; state.hidden is the caller's.
        """
        offsets = torch.arange(ids.shape[1], device=self.device)  # (T,)
        real = real_positions(ids.shape[1], lengths).long()  # (R, T)
        state.attention_mask = torch.cat([state.attention_mask, real], dim=1)  # (R, L + T)
        positions = state.next_positions[:, None] + offsets  # (R, T); padded slots get unused positions
        out = self.model.base_model(
            input_ids=ids,
            attention_mask=state.attention_mask,
            position_ids=positions,
            cache=state.cache,
            use_cache=True,
        )
        state.next_positions = state.next_positions + lengths
        return out.last_hidden_state  # (R, T, D)

    def _target_logprobs(
        self, hidden: torch.Tensor, targets: torch.Tensor, real: torch.Tensor, choices: Choices | None = None
    ) -> torch.Tensor:
        """log p(targets[r, t]) from the hidden state before it, hidden[r, t] (R, T, D), where real (R, T) is True;
        0 elsewhere. Over the whole vocabulary, or over choices (one list per real position, row by row; -inf
        for a target outside its list). Only real positions are projected, in chunks that bound the memory."""
        states, wanted = hidden[real], targets[real]  # (N, D), (N,)
        scores = torch.zeros(len(wanted), device=self.device)  # (N,)
        for i in range(0, len(wanted), _LOGPROB_POSITIONS):
            chunk = slice(i, i + _LOGPROB_POSITIONS)
            if choices is None:
                scores[chunk] = self.logprobs(states[chunk]).gather(-1, wanted[chunk, None])[:, 0]
                continue
            lp, ids = self.choice_logprobs(states[chunk], choices[chunk])  # (n, C) each
            hit = ids.eq(wanted[chunk, None])  # (n, C); a padding column (id 0) is at -inf, so a hit there is -inf
            scores[chunk] = lp.masked_fill(~hit, -math.inf).max(-1).values  # (n,)
        return torch.zeros(real.shape, device=self.device).masked_scatter(real, scores)  # (R, T)


@dataclass(frozen=True)
class _Packed:
    """Q prompts packed for one forward pass after the head: row i is [question i | its K_i fact suffixes]."""

    ids: torch.Tensor  # (Q, N) right-padded with id 0
    positions: torch.Tensor  # (Q, N) position ids: every suffix continues after its question
    visible: torch.Tensor  # (Q, 1, N, H + N) bool: the keys each token may attend to
    question_of: torch.Tensor  # (R,) the packed row of each fact row
    slots: torch.Tensor  # (R, L) the packed positions of each fact row's question and suffix, right-padded
    real: torch.Tensor  # (R, L) bool, False where slots is padding
    last: torch.Tensor  # (R,) the packed position of each fact row's last suffix token
    lengths: torch.Tensor  # (R,) question + suffix length of each fact row

    @staticmethod
    def of(prompts: Sequence[PromptIds], head_length: int, device: torch.device) -> _Packed:
        rows = [prompt.question + [t for suffix in prompt.suffixes for t in suffix] for prompt in prompts]
        ids, _ = right_pad(rows, device)  # (Q, N)
        segment = torch.full(ids.shape, -2, device=device)  # (Q, N) -1 question, k suffix k, -2 padding
        positions = torch.zeros_like(ids)  # (Q, N)
        slots = []
        for i, prompt in enumerate(prompts):
            q = len(prompt.question)
            segment[i, :q], positions[i, :q] = -1, torch.arange(q)
            offset = q
            for k, suffix in enumerate(prompt.suffixes):
                span = torch.arange(offset, offset + len(suffix))
                segment[i, span], positions[i, span] = k, torch.arange(q, q + len(suffix))
                slots.append(list(range(q)) + span.tolist())
                offset += len(suffix)
        order = torch.arange(ids.shape[1], device=device)  # (N,)
        same = (segment[:, None, :] == -1) | (segment[:, None, :] == segment[:, :, None])  # (Q, N, N) query, key
        own = same & (order[None, :] <= order[:, None]) & (segment[:, None, :] > -2)  # (Q, N, N) causal, no padding
        head = torch.ones(ids.shape[0], ids.shape[1], head_length, dtype=torch.bool, device=device)  # (Q, N, H)
        slot_ids, lengths = right_pad(slots, device)  # (R, L), (R,)
        return _Packed(
            ids=ids,
            positions=positions + head_length,
            visible=torch.cat([head, own], dim=-1)[:, None],  # (Q, 1, N, H + N)
            question_of=torch.arange(len(prompts), device=device).repeat_interleave(
                torch.tensor([len(prompt.suffixes) for prompt in prompts], device=device)
            ),  # (R,)
            slots=slot_ids,
            real=real_positions(slot_ids.shape[1], lengths),  # (R, L)
            last=slot_ids.gather(1, lengths[:, None] - 1)[:, 0],  # (R,)
            lengths=lengths,
        )


def _take(tensor: torch.Tensor, flat: torch.Tensor, rows: int) -> torch.Tensor:
    """Cache entries (Q, heads, W, hd) at flat indices q*W + w (R*L,), as (R, heads, L, hd)."""
    q, heads, width, head_dim = tensor.shape
    by_position = tensor.transpose(1, 2).reshape(q * width, heads * head_dim)  # (Q*W, heads*hd)
    return by_position.index_select(0, flat).view(rows, -1, heads, head_dim).transpose(1, 2)  # (R, heads, L, hd)
