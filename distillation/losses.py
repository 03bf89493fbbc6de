"""The losses: the RAG marginal NLL, and teacher -> student divergences on next-token distributions.

All pure functions of tensors. Shapes: B questions, K facts, T answer steps, V vocabulary; "..."
is any leading shape. Divergences take log-probabilities over V and a mask over the leading shape;
they are computed on the unmasked positions only and a masked position gives exactly 0, so whatever
it holds (even inf or nan) reaches neither the value nor the gradient.

    forward KL   KL(p || q) = sum_v p (log p - log q)         p teacher, q student (mode covering)
    reverse KL   KL(q || p)                                     (mode seeking)
    JSD(beta)    beta KL(p || m) + (1 - beta) KL(q || m),  m = beta p + (1 - beta) q
                 (GKD, Agarwal et al. 2024); 0 <= JSD(beta) <= H(beta) <= log 2,
                 and JSD(beta)(p, q) = JSD(1 - beta)(q, p)

The distillation loss of a question (RAG over K facts, answer y, temperature tau, weight alpha):

    alpha tau^2 [ mean_k sum_t D(p_k,t || q_k,t) + sum_t D(P_t || Q_t) ] + (1 - alpha) (-log Q(y|x))

p_k,t / q_k,t: the teacher's / student's next-token distribution given fact k (at temperature tau);
P_t / Q_t: their RAG-Token marginals sum_k p(k|x,y<t) p_k,t, each with its own fact posterior
(marginalize.prefix_doc_logprobs at temperature 1); -log Q(y|x) the student's RAG marginal NLL.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from generator_service.marginalize import (
    prefix_doc_logprobs,
    sequence_loglik,
    sequence_marginal,
    token_marginal,
)


def _on_unmasked(fn, p_logp: torch.Tensor, q_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """fn(p rows, q rows) on the unmasked positions only, 0 elsewhere: p_logp, q_logp (..., V), mask (...) -> (...)."""
    values = fn(p_logp[mask], q_logp[mask])  # (N,) for the N unmasked positions
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)  # (...)


def _kl_rows(p_logp: torch.Tensor, q_logp: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of log-prob rows (N, V) -> (N,)."""
    return (p_logp.exp() * (p_logp - q_logp)).sum(-1)  # (N,)


def forward_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student): (..., V), (..., V), mask (...) bool -> (...)."""
    return _on_unmasked(_kl_rows, teacher_logp, student_logp, mask)  # (...)


def reverse_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher): (..., V), (..., V), mask (...) bool -> (...)."""
    return _on_unmasked(_kl_rows, student_logp, teacher_logp, mask)  # (...)


def generalized_jsd(
    teacher_logp: torch.Tensor, student_logp: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """JSD(beta) = beta KL(t || m) + (1 - beta) KL(s || m), m = beta t + (1 - beta) s; 0 < beta < 1.

    (..., V), (..., V), mask (...) bool -> (...).
    """

    def jsd_rows(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # (N, V) x 2 -> (N,)
        mixture = torch.logaddexp(t + math.log(beta), s + math.log1p(-beta))  # (N, V)
        return beta * _kl_rows(t, mixture) + (1 - beta) * _kl_rows(s, mixture)  # (N,)

    return _on_unmasked(jsd_rows, teacher_logp, student_logp, mask)  # (...)


def divergence(
    name: str, teacher_logp: torch.Tensor, student_logp: torch.Tensor, mask: torch.Tensor, beta: float = 0.5
) -> torch.Tensor:
    """The configured divergence ("forward", "reverse" or "jsd") per position: (..., V) x 2, (...) -> (...)."""
    if name == "forward":
        return forward_kl(teacher_logp, student_logp, mask)
    if name == "reverse":
        return reverse_kl(teacher_logp, student_logp, mask)
    if name == "jsd":
        return generalized_jsd(teacher_logp, student_logp, mask, beta)
    raise ValueError(f"unknown divergence {name!r}")


def rag_nll(token_logp: torch.Tensor, target_mask: torch.Tensor, log_priors: torch.Tensor) -> torch.Tensor:
    """-log sum_d p(d|x) p(y|x,d), the RAG-Sequence NLL of the answers.

    token_logp (B, K, T) = log p(y_t|x,d,y<t), target_mask (B, T), log_priors (B, K) -> (B,).
    """
    return -sequence_marginal(log_priors, sequence_loglik(token_logp, target_mask))  # (B,)


def marginal_logprobs(
    logp: torch.Tensor, token_logp: torch.Tensor, target_mask: torch.Tensor, log_priors: torch.Tensor
) -> torch.Tensor:
    """log sum_k p(k|x,y<t) p_k,t: the RAG-Token marginal of the per-fact distributions logp at every step.

    logp (B, K, T, V) per-fact log-probs (at any temperature); the fact posterior p(k|x,y<t) is the
    Bayes one from token_logp (B, K, T) = log p(y_t|x,k,y<t) at temperature 1; target_mask (B, T),
    log_priors (B, K) -> (B, T, V).
    """
    posterior = prefix_doc_logprobs(log_priors, token_logp, target_mask)  # (B, K, T)
    return token_marginal(posterior, logp)  # (B, T, V)


def distillation_loss(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    target_mask: torch.Tensor,
    log_priors: torch.Tensor,
    fact_mask: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    divergence_name: str = "forward",
    beta: float = 0.5,
) -> dict[str, torch.Tensor]:
    """The student's loss (see the module docstring) and its parts, each averaged over the B questions.

    teacher_logits, student_logits (B, K, T, V); targets, target_mask (B, T); log_priors, fact_mask (B, K).
    Returns {"loss", "per_fact", "marginal", "nll"}, scalars.
    """
    steps = fact_mask[:, :, None] & target_mask[:, None, :]  # (B, K, T)
    sides = {}
    for name, logits in (("teacher", teacher_logits), ("student", student_logits)):
        logp = F.log_softmax(logits, dim=-1)  # (B, K, T, V)
        tempered = logp if temperature == 1 else F.log_softmax(logits / temperature, dim=-1)  # (B, K, T, V)
        token_logp = logp.gather(-1, targets[:, None, :, None].expand(*logp.shape[:3], 1))[..., 0]  # (B, K, T)
        sides[name] = (tempered, token_logp)
    (teacher_t, teacher_tokens), (student_t, student_tokens) = sides["teacher"], sides["student"]
    per_fact = divergence(divergence_name, teacher_t, student_t, steps, beta).sum(-1)  # (B, K)
    per_fact = per_fact.sum(-1) / fact_mask.sum(-1).clamp(min=1)  # (B,) mean over real facts
    teacher_marginal = marginal_logprobs(teacher_t, teacher_tokens, target_mask, log_priors)  # (B, T, V)
    student_marginal = marginal_logprobs(student_t, student_tokens, target_mask, log_priors)  # (B, T, V)
    marginal = divergence(divergence_name, teacher_marginal, student_marginal, target_mask, beta).sum(-1)  # (B,)
    nll = rag_nll(student_tokens, target_mask, log_priors)  # (B,)
    loss = alpha * temperature**2 * (per_fact + marginal) + (1 - alpha) * nll  # (B,)
    return {"loss": loss.mean(), "per_fact": per_fact.mean(), "marginal": marginal.mean(), "nll": nll.mean()}
