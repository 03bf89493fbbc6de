"""Training batches of questions with their documents (relation paths; "facts" below, as the generator's
prompt calls them), and the teacher-forced pass that scores the answers.

The prompts are the generator's (generator_service/prompt.py): a head (instruction and one-shot
example) shared by every row, the question line shared by its facts, then per fact its suffix
(fact and answer cue), then the answer. As in FactScorer, the shared parts run once, with gradients:
the head as one row, the question lines as one row per question on the head's cache, and every
fact's suffix and answer as one row on its question's cache. The rows are padded in the middle
(suffix to S, then answer); the attention mask hides the padding and explicit position ids skip it.
Only the answer steps go through the output projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from distillation.data import Example
from generator_service.batch_rows import real_positions, right_pad, select_cache_rows
from generator_service.fact_scoring import FactScorer


@dataclass
class RagBatch:
    """B questions with K_b facts each: R = sum K_b rows, question-major, padded to Kmax facts."""

    head: torch.Tensor  # (1, H) instruction + example
    questions: torch.Tensor  # (B, Lq) question lines, right-padded
    question_lengths: torch.Tensor  # (B,)
    row_question: torch.Tensor  # (R,) the question of each row
    row_slot: torch.Tensor  # (R,) b * Kmax + k: the row's place in (B, Kmax)
    suffixes: torch.Tensor  # (R, S) fact + answer cue, right-padded
    suffix_lengths: torch.Tensor  # (R,)
    targets: torch.Tensor  # (B, T) answer tokens then EOS, right-padded with 0
    target_mask: torch.Tensor  # (B, T) bool, True for real target tokens
    log_priors: torch.Tensor  # (B, Kmax) log p(d|x), -inf for missing facts
    fact_mask: torch.Tensor  # (B, Kmax) bool, True for real facts

    @property
    def tokens(self) -> int:
        """Real tokens fed to the model: head, question lines, suffixes and answer inputs (last target excluded)."""
        answer_inputs = (self.target_mask.sum(1) - 1)[self.row_question]  # (R,)
        return int(self.head.shape[1] + self.question_lengths.sum() + self.suffix_lengths.sum() + answer_inputs.sum())


def _target(example: Example) -> str:
    if example.target is None:
        raise ValueError(f"no training target for {example.question!r}")
    return example.target


def answer_ids(scorer: FactScorer, answer: str) -> list[int]:
    """The answer's tokens as the generator writes them after the cue, then EOS (its stop token)."""
    return scorer.answer_token_ids(answer) + [scorer.tokenizer.eos_token_id]


def make_batch(scorer: FactScorer, examples: list[Example], device: torch.device) -> RagBatch:
    """Token tensors of examples with a target and at least one fact, on `device`."""
    prompts = [scorer.build_prompt(e.question, e.texts) for e in examples]
    k_max = max(len(e.documents) for e in examples)
    fact_counts = torch.tensor([len(e.documents) for e in examples])  # (B,)
    rows_per_b = [torch.arange(len(e.documents)) for e in examples]
    questions, question_lengths = right_pad([p.question for p in prompts])  # (B, Lq), (B,)
    suffixes, suffix_lengths = right_pad([s for p in prompts for s in p.suffixes])  # (R, S), (R,)
    targets, target_lengths = right_pad([answer_ids(scorer, _target(e)) for e in examples])  # (B, T), (B,)
    log_priors = torch.full((len(examples), k_max), -torch.inf)  # (B, Kmax)
    for b, example in enumerate(examples):
        log_priors[b, : len(example.documents)] = torch.tensor(example.log_priors)
    row_question = torch.arange(len(examples)).repeat_interleave(fact_counts)  # (R,)
    batch = RagBatch(
        head=torch.tensor([prompts[0].head]),
        questions=questions,
        question_lengths=question_lengths,
        row_question=row_question,
        row_slot=row_question * k_max + torch.cat(rows_per_b),
        suffixes=suffixes,
        suffix_lengths=suffix_lengths,
        targets=targets,
        target_mask=real_positions(targets.shape[1], target_lengths),
        log_priors=log_priors,
        fact_mask=real_positions(k_max, fact_counts),
    )
    return RagBatch(**{name: value.to(device) for name, value in vars(batch).items()})


def answer_logits(model: PreTrainedModel, batch: RagBatch) -> torch.Tensor:
    """Teacher-forced logits of every answer step under every fact, (B, Kmax, T, V) float32; 0 for missing facts.

    logits[b, k, t] predicts targets[b, t] from question b, fact k and targets[b, :t].
    """
    cache, prefix_mask = _row_prefixes(model, batch)  # R rows of head + question, (R, H + Lq)
    rows, device = batch.row_question, batch.head.device
    s, t = batch.suffixes.shape[1], batch.targets.shape[1]
    start = batch.head.shape[1] + batch.question_lengths[rows]  # (R,) position of each row's first suffix token
    positions = torch.cat(
        [
            start[:, None] + torch.arange(s, device=device),
            (start + batch.suffix_lengths)[:, None] + torch.arange(t - 1, device=device),
        ],
        dim=1,
    )
    answer_real = batch.target_mask[rows, :-1].long()  # (R, T-1)
    suffix_real = real_positions(s, batch.suffix_lengths).long()  # (R, S)
    mask = torch.cat([prefix_mask, suffix_real, answer_real], dim=1)  # (R, H + Lq + S + T-1)
    ids = torch.cat([batch.suffixes, batch.targets[rows, :-1]], dim=1)  # (R, S + T-1): suffix, answer but its last
    hidden = model.base_model(
        input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
    ).last_hidden_state  # (R, S + T-1, D)
    answer_steps = s + torch.arange(t - 1, device=device).expand(len(rows), -1)  # (R, T-1)
    steps = torch.cat([batch.suffix_lengths[:, None] - 1, answer_steps], dim=1)  # (R, T) output predicting target t
    picked = hidden.gather(1, steps[..., None].expand(-1, -1, hidden.shape[-1]))  # (R, T, D)
    logits = model.get_output_embeddings()(picked).float()  # (R, T, V)
    b, k_max = batch.fact_mask.shape
    out = logits.new_zeros(b * k_max, t, logits.shape[-1]).index_copy(0, batch.row_slot, logits)  # (B*Kmax, T, V)
    return out.view(b, k_max, t, -1)  # (B, Kmax, T, V)


def _row_prefixes(model: PreTrainedModel, batch: RagBatch) -> tuple[DynamicCache, torch.Tensor]:
    """The KV cache of head + question line for every row (the head run once, each question once), and its
    attention mask (R, H + Lq), 0 over the padding after short question lines."""
    base, config, device = model.base_model, model.config, batch.head.device
    b, head_len = batch.questions.shape[0], batch.head.shape[1]
    cache = DynamicCache(config=config)
    base(input_ids=batch.head, cache=cache, use_cache=True)
    cache = select_cache_rows(cache, torch.zeros(b, dtype=torch.long, device=device), config)
    q_real = real_positions(batch.questions.shape[1], batch.question_lengths).long()  # (B, Lq)
    mask = torch.cat([torch.ones(b, head_len, dtype=torch.long, device=device), q_real], dim=1)  # (B, H + Lq)
    positions = head_len + torch.arange(batch.questions.shape[1], device=device).expand(b, -1)  # (B, Lq)
    base(input_ids=batch.questions, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    return select_cache_rows(cache, batch.row_question, config), mask[batch.row_question]
