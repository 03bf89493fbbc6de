"""The RAG marginal over retrieved facts, in log space.

Notation: a question x, K retrieved facts d with prior p(d|x), an answer
y = y_1..y_T. Shapes: B batch, K facts, T answer steps, V vocabulary.
Every quantity is a log-probability; sums of probabilities are taken with
logsumexp and normalisations with log_softmax, so nothing small is ever
multiplied and log-probs near -1e4 stay finite.

Prior (retriever scores s_d, temperature tau):
    log p(d|x) = log_softmax_d(s_d / tau)

Per-fact sequence likelihood (masked steps contribute nothing):
    log p(y|x,d) = sum_t mask_t * log p(y_t|x,d,y<t)

RAG-Sequence marginal and Bayes posterior over facts:
    log p(y|x)   = logsumexp_d( log p(d|x) + log p(y|x,d) )
    log p(d|x,y) = log p(d|x) + log p(y|x,d) - log p(y|x)

RAG-Token, exact form. At step t the next-token distribution mixes the facts
with their posterior after the prefix y<t:
    p(d|x,y<t)       ∝ p(d|x) * prod_{s<t} p(y_s|x,d,y<s)
    p(y_t|x,y<t)     = sum_d p(d|x,y<t) * p(y_t|x,d,y<t)
and the chain rule gives prod_t p(y_t|x,y<t) = p(y|x): the per-step marginals
multiply back to the RAG-Sequence marginal exactly. The RAG paper's RAG-Token
(transformers' ``RagTokenForGeneration.marginalize``) instead keeps the prior
p(d|x) at every step; that agrees with the above at t=1 only.

A one-token answer keeps its prior here: log p(y|x) = logsumexp_d(log p(d|x) +
log p(y_1|x,d)). (transformers' ``RagSequenceForGeneration.get_nll`` adds the
doc log-probs at its second target position, which is a masked pad for a
one-token answer, so the prior is dropped there.)
"""

import torch
import torch.nn.functional as F


def log_prior(scores: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """log p(d|x) from retriever scores (B, K) at temperature tau -> (B, K)."""
    return F.log_softmax(scores / tau, dim=-1)  # (B, K)


def gather_token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(y_t|x,d,y<t) of the target tokens.

    logits (B, K, T, V) per fact and step; targets (B, T) shared by all facts, or
    (B, K, T). Returns (B, K, T).
    """
    logprobs = F.log_softmax(logits, dim=-1)  # (B, K, T, V)
    if targets.dim() == 2:
        targets = targets.unsqueeze(1)  # (B, 1, T)
    targets = targets.expand(logprobs.shape[:-1])  # (B, K, T)
    return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, K, T)


def token_marginal(doc_logprobs: torch.Tensor, next_token_logprobs: torch.Tensor) -> torch.Tensor:
    """log sum_d p(d|.) p(v|.,d): the mixed next-token distribution.

    doc_logprobs (B, K) and next_token_logprobs (B, K, V) -> (B, V). An extra
    step axis works too: (B, K, T) and (B, K, T, V) -> (B, T, V).
    """
    joint = doc_logprobs.unsqueeze(-1) + next_token_logprobs  # (B, K, V)
    return torch.logsumexp(joint, dim=1)  # (B, V)


def update_doc_logprobs(doc_logprobs: torch.Tensor, chosen_token_logprobs: torch.Tensor) -> torch.Tensor:
    """Posterior over facts after emitting one token (Bayes, renormalised).

    doc_logprobs (B, K) = log p(d|x,y<t); chosen_token_logprobs (B, K) =
    log p(y_t|x,d,y<t). Returns log p(d|x,y<=t), (B, K).
    """
    return F.log_softmax(doc_logprobs + chosen_token_logprobs, dim=-1)  # (B, K)


def _masked(token_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the masked steps; mask (B, T) or (B, K, T). torch.where, not a
    product, so a -inf log-prob under the mask gives 0 rather than nan."""
    if mask.dim() == 2:
        mask = mask.unsqueeze(1)  # (B, 1, T)
    return torch.where(mask.bool(), token_logprobs, torch.zeros_like(token_logprobs))  # (B, K, T)


def prefix_doc_logprobs(doc_logprobs: torch.Tensor, token_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(d|x,y<t) for every step t at once (teacher forcing).

    doc_logprobs (B, K) prior; token_logprobs (B, K, T) = log p(y_t|x,d,y<t);
    mask (B, T) or (B, K, T), masked steps leave the posterior unchanged.
    Returns (B, K, T); step 0 is the prior. Same as repeated update_doc_logprobs.
    """
    kept = _masked(token_logprobs, mask)  # (B, K, T)
    before = kept.cumsum(dim=-1) - kept  # (B, K, T) sum over s<t
    return F.log_softmax(doc_logprobs.unsqueeze(-1) + before, dim=1)  # (B, K, T)


def sequence_loglik(token_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(y|x,d) = sum_t of unmasked log p(y_t|x,d,y<t).

    token_logprobs (B, K, T); mask (B, T) or (B, K, T), true where a step counts.
    Returns (B, K).
    """
    return _masked(token_logprobs, mask).sum(dim=-1)  # (B, K)


def sequence_marginal(doc_logprobs: torch.Tensor, seq_loglik: torch.Tensor) -> torch.Tensor:
    """RAG-Sequence log p(y|x) = logsumexp_d(log p(d|x) + log p(y|x,d)).

    doc_logprobs (B, K), seq_loglik (B, K) -> (B,).
    """
    return torch.logsumexp(doc_logprobs + seq_loglik, dim=-1)  # (B,)


def doc_posterior(doc_logprobs: torch.Tensor, seq_loglik: torch.Tensor) -> torch.Tensor:
    """log p(d|x,y) = log p(d|x) + log p(y|x,d) - log p(y|x).

    doc_logprobs (B, K), seq_loglik (B, K) -> (B, K).
    """
    return F.log_softmax(doc_logprobs + seq_loglik, dim=-1)  # (B, K)
