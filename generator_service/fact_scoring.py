"""Per-fact next-token log-probabilities for one question and K retrieved facts, sharing the prompt prefix.

Every fact's prompt is [instruction + question] (the shared prefix, identical for all K) followed
by [fact + answer cue]. The prefix is run once (batch 1); its KV cache is copied to K rows and
the K fact suffixes run as one right-padded batch, with a 2D attention mask over prefix+suffix
and explicit position ids, so padding changes nothing. Answer tokens are then appended one step
at a time (RAG-Token decoding, beams included) or all at once (scoring given answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

DEFAULT_INSTRUCTION = "Answer the question using the fact. Reply with the answer only."
_FACT_SLOT = "\u241eFACT\u241e"  # marks where the fact goes in the rendered chat template


@dataclass(frozen=True)
class PromptIds:
    prefix: list[int]  # instruction + question: shared by every fact
    suffixes: list[list[int]]  # per fact: fact + answer cue; prefix + suffixes[k] is fact k's prompt


@dataclass
class DecodeState:
    """R decoding rows (K facts, or beams*K), each a prompt plus the answer tokens appended so far.

    Rows are padded in the middle (after each fact suffix); attention_mask hides the padding.
    """

    cache: DynamicCache  # keys/values (R, heads, L, head_dim) per layer
    attention_mask: torch.Tensor  # (R, L) 1 = real token
    next_positions: torch.Tensor  # (R,) position id of the next appended token
    logprobs: torch.Tensor  # (R, V) float32 log p(next token | row)


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
        """Token ids of the shared prefix and of each fact's suffix, tokenized separately.

        With a chat template: system = instruction, user = "Question: ...\\nFact: ...", then the
        assistant cue. The split falls right after the newline that ends the question line.
        """
        has_template = bool(self.tokenizer.chat_template)
        user = f"Question: {question}\n{_FACT_SLOT}"
        if has_template:
            messages = [{"role": "system", "content": self.instruction}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{self.instruction}\n{user}\nAnswer:\n"
        prefix, _, cue = text.rpartition(_FACT_SLOT)
        tok = self.tokenizer
        return PromptIds(
            prefix=tok(prefix, add_special_tokens=not has_template).input_ids,
            suffixes=[tok(f"Fact: {fact}{cue}", add_special_tokens=False).input_ids for fact in facts],
        )

    @torch.inference_mode()
    def start(self, question: str, facts: Sequence[str]) -> DecodeState:
        """Run the prefix once and the K fact suffixes as one batch; state.logprobs is (K, V) for answer token 1."""
        if not facts:
            raise ValueError("at least one fact is needed")
        prompt = self.build_prompt(question, facts)
        prefix = torch.tensor([prompt.prefix], device=self.device)  # (1, P)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=prefix, cache=cache, use_cache=True, logits_to_keep=1)  # logits (1, 1, V)
        shared = DecodeState(
            cache=out.cache,
            attention_mask=torch.ones_like(prefix),  # (1, P)
            next_positions=torch.tensor([prefix.shape[1]], device=self.device),  # (1,)
            logprobs=out.logits[:, -1].float().log_softmax(-1),  # (1, V) after the bare prefix
        )
        state = self.select_rows(shared, torch.zeros(len(facts), dtype=torch.long, device=self.device))
        suffix, lengths = _right_pad(prompt.suffixes, self.device)  # (K, S), (K,)
        logits = self._extend(state, suffix, lengths)  # (K, S, V)
        last = logits[torch.arange(len(facts), device=self.device), lengths - 1]  # (K, V)
        state.logprobs = last.float().log_softmax(-1)
        return state

    @torch.inference_mode()
    def step(self, state: DecodeState, token_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Append token_ids[r] to row r (in place) and return the next-token log-probs (R, V)."""
        tokens = torch.as_tensor(token_ids, dtype=torch.long, device=self.device).view(-1, 1)  # (R, 1)
        ones = torch.ones(tokens.shape[0], dtype=torch.long, device=self.device)  # (R,)
        logits = self._extend(state, tokens, ones)  # (R, 1, V)
        state.logprobs = logits[:, 0].float().log_softmax(-1)
        return state.logprobs

    @torch.inference_mode()
    def select_rows(self, state: DecodeState, index: torch.Tensor) -> DecodeState:
        """A new state whose row i is state's row index[i] (the old state is left as is).

        For beams over K facts: expand with index = arange(K).repeat(B) (row b*K + k is beam b
        on fact k), then after each step reorder with index = parent_beam.repeat_interleave(K) * K
        + arange(K).repeat(B).
        """
        index = index.to(self.device)
        layers = [(keys.index_select(0, index), values.index_select(0, index)) for keys, values, *_ in state.cache]
        return DecodeState(
            cache=DynamicCache(layers, config=self.model.config),
            attention_mask=state.attention_mask.index_select(0, index),
            next_positions=state.next_positions.index_select(0, index),
            logprobs=state.logprobs.index_select(0, index),
        )

    @torch.inference_mode()
    def score_answers(
        self, question: str, facts: Sequence[str], answer_token_ids: Sequence[Sequence[int]]
    ) -> AnswerScores:
        """log p(y_t | question, fact k, y_<t) for every fact k and candidate answer n, in one batch of K*N rows."""
        state = self.start(question, facts)
        answers, lengths = _right_pad(answer_token_ids, self.device)  # (N, T), (N,)
        if int(lengths.min()) == 0:
            raise ValueError("every candidate answer needs at least one token")
        k, (n, t) = len(facts), answers.shape
        rows = self.select_rows(state, torch.arange(k, device=self.device).repeat_interleave(n))  # row k*N + n
        logprobs = rows.logprobs[:, None]  # (K*N, 1, V): first answer token
        if t > 1:
            logits = self._extend(rows, answers[:, :-1].repeat(k, 1), (lengths - 1).repeat(k))  # (K*N, T-1, V)
            logprobs = torch.cat([logprobs, logits.float().log_softmax(-1)], dim=1)  # (K*N, T, V)
        token_lp = logprobs.gather(-1, answers.repeat(k, 1)[..., None])[..., 0]  # (K*N, T)
        mask = torch.arange(t, device=self.device) < lengths[:, None]  # (N, T)
        return AnswerScores(token_lp.view(k, n, t).masked_fill(~mask, 0.0), mask)

    @torch.inference_mode()
    def score_answers_naive(
        self, question: str, facts: Sequence[str], answer_token_ids: Sequence[Sequence[int]]
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
                logits = self.model(input_ids=ids).logits[0, len(context) - 1 : -1]  # (A, V)
                picked = logits.float().log_softmax(-1).gather(-1, ids[0, len(context) :, None])  # (A, 1)
                scores[k, n, : len(answer)] = picked[:, 0]
                mask[n, : len(answer)] = True
        return AnswerScores(scores, mask)

    def _extend(self, state: DecodeState, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Append right-padded ids (R, T) to every row (row r has lengths[r] real tokens); return logits (R, T, V).

        Updates the cache, the attention mask and the next positions in place; state.logprobs is the caller's.
        """
        offsets = torch.arange(ids.shape[1], device=self.device)  # (T,)
        real = (offsets < lengths[:, None]).long()  # (R, T)
        state.attention_mask = torch.cat([state.attention_mask, real], dim=1)  # (R, L + T)
        positions = state.next_positions[:, None] + offsets  # (R, T); padded slots get unused positions
        out = self.model(
            input_ids=ids,
            attention_mask=state.attention_mask,
            position_ids=positions,
            cache=state.cache,
            use_cache=True,
        )
        state.next_positions = state.next_positions + lengths
        return out.logits  # (R, T, V)


def _right_pad(sequences: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as a (B, T_max) tensor right-padded with id 0 (always masked out), and their lengths (B,)."""
    lengths = torch.tensor([len(seq) for seq in sequences], device=device)  # (B,)
    padded = torch.zeros(len(sequences), max(int(lengths.max()), 1), dtype=torch.long, device=device)  # (B, T)
    for row, seq in enumerate(sequences):
        padded[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
    return padded, lengths
