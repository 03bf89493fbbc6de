"""Relation-aware scoring: which relation (and direction) a question asks about.

Plain cosine similarity between a question and "Runaway directed by Michael Crichton" barely
tells "who acted in Runaway" from "who directed Runaway": the entity dominates both vectors. A
relation prior learns, from questions with known answers, one centroid of question vectors per
relation key — `directed_by` when the linked entity is the subject, `directed_by^-1` when it is
the object — and scores a candidate fact by

    score = cosine(q, fact) + weight * log p(key(fact) | q),   p(key|q) = softmax(cos(q, c_key) / temperature)

The centroids are fitted on training questions (MetaQA dev, never test) by `kgrag-ingest
fit-relations`; weight and temperature are chosen on a held-out part of those questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INVERSE = "^-1"


def relation_key(payload: dict, linked_names: set[str]) -> str:
    """The fact's relation as seen from the linked entity: 'r' from its subject, 'r^-1' from its object."""
    if payload["subject"] in linked_names or payload["object"] not in linked_names:
        return payload["relation"]
    return payload["relation"] + INVERSE


@dataclass
class RelationPrior:
    keys: list[str]
    centroids: np.ndarray  # (R, H) unit vectors
    temperature: float = 0.05
    weight: float = 0.3

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.keys)}  # key -> centroid row, built once

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: list[set[str]], **params: float) -> "RelationPrior":
        """Centroid of the question vectors (N, H) labelled with each key (a question may have several)."""
        keys = sorted({k for ks in labels for k in ks})
        rows = {k: [i for i, ks in enumerate(labels) if k in ks] for k in keys}
        centroids = np.stack([vectors[rows[k]].mean(axis=0) for k in keys])  # (R, H)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        return cls(keys=keys, centroids=centroids.astype(np.float32), **params)

    def log_probs(self, vectors: np.ndarray) -> np.ndarray:
        """log p(key | q) for question vectors (Q, H) -> (Q, R)."""
        logits = vectors @ self.centroids.T / self.temperature  # (Q, R)
        return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)

    def rescore(self, cosines: list[float], keys: list[str], log_probs: np.ndarray) -> list[float]:
        """Scores of one question's candidates; a key never seen in training gets the lowest log p."""
        floor = float(log_probs.min())
        return [c + self.weight * (float(log_probs[self._index[k]]) if k in self._index else floor)
                for c, k in zip(cosines, keys)]

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"keys": self.keys, "temperature": self.temperature, "weight": self.weight})
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, centroids=self.centroids, meta=np.array(meta))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "RelationPrior | None":
        if not path.exists():
            return None
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return cls(keys=meta["keys"], centroids=data["centroids"], temperature=meta["temperature"],
                       weight=meta["weight"])
