"""Relation-aware scoring: which relation (and direction) a question asks about.

Plain cosine similarity between a question and "Runaway directed by Michael Crichton" barely
tells "who acted in Runaway" from "who directed Runaway": the entity dominates both vectors. A
relation prior reads the question with its linked entity masked ("who directed X",
`entity_linking.mask_mention`) and predicts the relation key it asks about — `directed_by` when
the linked entity is the subject, `directed_by^-1` when it is the object — with a softmax
regression on the masked question's vector. A candidate fact is scored by

    score = cosine(q, fact) + weight * log p(key(fact) | q),   p(key|q) = softmax((W v + b) / temperature)

where q is read with the linked mention the fact touches masked (`Retriever._readings`: one
reading per mention).

It is fitted on training questions (MetaQA dev, never test) by `kgrag-ingest fit-relations`;
weight and temperature are chosen on a held-out part of those questions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from retriever_service.chains import INVERSE

log = logging.getLogger(__name__)

FORMAT = 3  # 1: centroids of unmasked question vectors; 2: softmax regression on masked questions; 3: chain keys
READABLE = (2, 3)  # a format-2 prior's keys are one-step chains: it still serves
L2 = 1e-5  # chosen on a held-out fifth of MetaQA dev: key accuracy 0.983 / 0.990 / 0.986 at 0 / 1e-5 / 1e-4


def relation_key(payload: dict, linked_names: set[str]) -> str:
    """The fact's relation as seen from the linked entity: 'r' from its subject, 'r^-1' from its object."""
    if payload["subject"] in linked_names or payload["object"] not in linked_names:
        return payload["relation"]
    return payload["relation"] + INVERSE


@dataclass
class RelationPrior:
    keys: list[str]
    weights: np.ndarray  # (R, H)
    bias: np.ndarray  # (R,)
    temperature: float = 1.0
    weight: float = 0.3
    mention_penalty: float = 0.0  # subtracted from a path's score per rank of its mention below the linker's first
    naming_weight: float = 0.0  # added to a path's score times the share of its chain's steps the question names
    # P(y in Y|x) an answer needs to be in the answer set, chosen on held-out questions
    answer_threshold: float | None = None
    abstain_threshold: float | None = None  # support under which the question is "not in the graph", likewise

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.keys)}  # key -> row, built once

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: list[set[str]], **params: float) -> RelationPrior:
        """Softmax regression of the keys on masked question vectors (N, H); a question with several keys
        spreads its target evenly over them. Full-batch L-BFGS from zeros with a small L2 penalty (no random start)."""
        keys = sorted({k for ks in labels for k in ks})
        column = {k: i for i, k in enumerate(keys)}
        target = torch.zeros(len(labels), len(keys))  # (N, R)
        for row, ks in enumerate(labels):
            target[row, [column[k] for k in ks]] = 1.0 / len(ks)
        x = torch.as_tensor(vectors, dtype=torch.float32)  # (N, H)
        weights = torch.zeros(len(keys), x.shape[1], requires_grad=True)  # (R, H)
        bias = torch.zeros(len(keys), requires_grad=True)  # (R,)
        optimizer = torch.optim.LBFGS([weights, bias], max_iter=1000, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            log_p = torch.log_softmax(x @ weights.T + bias, dim=1)  # (N, R)
            loss = -(target * log_p).sum(dim=1).mean() + L2 * weights.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(keys=keys, weights=weights.detach().numpy(), bias=bias.detach().numpy(), **params)

    @classmethod
    def uniform(cls, relations: list[str], dim: int) -> RelationPrior:
        """Every one-step chain of the relations equally likely: where no prior was fitted, cosine decides."""
        keys = [key for r in relations for key in (r, r + INVERSE)]
        return cls(
            keys=keys, weights=np.zeros((len(keys), dim), dtype=np.float32), bias=np.zeros(len(keys), dtype=np.float32)
        )

    def log_probs(self, vectors: np.ndarray) -> np.ndarray:
        """log p(key | q) for masked question vectors (Q, H) -> (Q, R)."""
        logits = (vectors @ self.weights.T + self.bias) / self.temperature  # (Q, R)
        return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)

    def column(self, key: str) -> int | None:
        """The key's column in `log_probs`, or None for a key never seen in training."""
        return self._index.get(key)

    def log_prob(self, key: str, log_probs: np.ndarray) -> float:
        """log p(key | q) from one row (R,) of `log_probs`; a key never seen in training gets the row's lowest."""
        row = self.column(key)
        return float(log_probs.min() if row is None else log_probs[row])

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(
            {
                "format": FORMAT,
                "keys": self.keys,
                "temperature": self.temperature,
                "weight": self.weight,
                "mention_penalty": self.mention_penalty,
                "naming_weight": self.naming_weight,
                "answer_threshold": self.answer_threshold,
                "abstain_threshold": self.abstain_threshold,
            }
        )
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, weights=self.weights, bias=self.bias, meta=np.array(meta))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> RelationPrior | None:
        """The saved prior; None when there is none, or when it is of an older format (logged: refit it)."""
        if not path.exists():
            return None
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") not in READABLE:
                log.warning(
                    "relation prior %s is of an older format and is not used; refit it with "
                    "`kgrag-ingest fit-relations`",
                    path,
                )
                return None
            return cls(
                keys=meta["keys"],
                weights=data["weights"],
                bias=data["bias"],
                temperature=meta["temperature"],
                weight=meta["weight"],
                mention_penalty=meta.get("mention_penalty", 0.0),
                naming_weight=meta.get("naming_weight", 0.0),
                answer_threshold=meta.get("answer_threshold"),
                abstain_threshold=meta.get("abstain_threshold"),
            )
