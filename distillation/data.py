"""The data step: question-answer pairs with their retrieved facts, stored once as JSONL.

Questions: MetaQA 1-hop dev (never test) and template questions written from the KG's triples
(templates.py). Each question is searched once with the in-process retriever (batched) for its
top-k facts and their priors p(d|x); training reads `data/train.jsonl` and never calls the
retriever. `data/manifest.json` records every file read, the counts and the seed.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from distillation.config import DataConfig, DistillConfig, save_config
from distillation.templates import template_questions
from retriever_service.demo_kg import demo_triples
from retriever_service.encoder import Encoder
from retriever_service.readers import read_triples
from retriever_service.retrieval import Retriever
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.facts import Triple, answer_candidates
from shared.metrics import Metrics
from shared.names import fold
from shared.qa_data import Question, metaqa_split

log = logging.getLogger(__name__)
DEMO_KG = "demo"  # in data.kg_files: the countries KG of retriever_service.demo_kg


@dataclass
class Example:
    question: str  # as the retriever and the model see it (MetaQA's [brackets] removed)
    answers: list[str]  # every gold answer
    qtype: str  # question type: MetaQA's, or the template's
    source: str  # "metaqa/1-hop/dev", "metaqa/1-hop/test" or "template"
    facts: list[dict] = field(default_factory=list)  # retrieved, best first: triple, text, score, prior
    linked: list[str] = field(default_factory=list)  # KG names of the entities linked in the question
    target: str | None = None  # the training answer: the best-ranked fact entity that is a gold answer

    @property
    def log_priors(self) -> list[float]:
        """log p(d|x) of the facts (a prior that underflowed to 0 is -inf), as the generator's API computes them."""
        return [math.log(f["prior"]) if f["prior"] > 0 else -math.inf for f in self.facts]

    @property
    def fact_texts(self) -> list[str]:
        return [f["text"] for f in self.facts]

    def candidates(self) -> list[str]:
        """The entity names of the facts, the linked question entities left out unless nothing else is left."""
        return answer_candidates(self.facts, set(self.linked))

    @classmethod
    def of_metaqa(cls, question: Question, split: str) -> Example:
        """A MetaQA 1-hop question of `split`, brackets stripped."""
        return cls(question.stripped, list(question.answers), question.qtype, f"metaqa/1-hop/{split}")

    def gold_target(self) -> str | None:
        """The first fact entity (facts best first, object before subject) that folds to a gold answer."""
        gold = {fold(answer) for answer in self.answers}
        return next((name for f in self.facts for name in (f["object"], f["subject"]) if fold(name) in gold), None)


def run_data(config: DistillConfig, retriever: Retriever) -> dict:
    """Write data/train.jsonl and data/manifest.json under the run directory; returns the manifest."""
    cfg, out = config.data, Path(config.run_dir) / "data"
    sources: list[str] = []
    questions = dev_questions(cfg, config.seed, sources) + kg_questions(cfg, config.seed, sources)
    by_key: dict[str, Example] = {}
    for question in questions:
        by_key.setdefault(fold(question.question), question)  # the first of each folded text is kept
    unique = list(by_key.values())
    examples = retrieve(retriever, unique, cfg.top_k, cfg.retrieval_batch_size)
    for example in examples:
        example.target = example.gold_target()
    kept = [e for e in examples if e.target is not None or not cfg.require_answer_in_facts]
    write_examples(out / "train.jsonl", kept)
    manifest = {
        "sources": sources,
        "retriever": _retriever_source(cfg),
        "seed": config.seed,
        "counts": {"questions": len(questions), "unique": len(unique), "answer_in_facts":
                   sum(e.target is not None for e in examples), "kept": len(kept),
                   "by_source": {s: sum(e.source == s for e in kept) for s in sorted({e.source for e in kept})}},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    save_config(config, out / "distillation_config.json")
    log.info("data: %s", manifest["counts"])
    return manifest


def dev_questions(cfg: DataConfig, seed: int, sources: list[str]) -> list[Example]:
    """A seeded sample of MetaQA 1-hop dev questions; the files read are appended to `sources`."""
    if cfg.max_metaqa_questions <= 0:
        return []
    path = Path(cfg.metaqa_dir) / "1-hop" / "dev.txt"
    questions = metaqa_split(1, "dev", Path(cfg.metaqa_dir))
    sources.extend(str(p.resolve()) for p in (path, path.with_name("qa_dev_qtype.txt")) if p.exists())
    if len(questions) > cfg.max_metaqa_questions:
        keep = sorted(random.Random(f"{seed}:metaqa").sample(range(len(questions)), cfg.max_metaqa_questions))
        questions = [questions[i] for i in keep]
    return [Example.of_metaqa(q, "dev") for q in questions]


def kg_questions(cfg: DataConfig, seed: int, sources: list[str]) -> list[Example]:
    """Template questions from the KG files; the files read are appended to `sources`."""
    if cfg.max_template_questions <= 0:
        return []
    sources.extend(DEMO_KG if name == DEMO_KG else str(Path(name).resolve()) for name in cfg.kg_files)
    written = template_questions(kg_triples(cfg.kg_files), limit=cfg.max_template_questions,
                                 phrasings=cfg.phrasings_per_pair, max_answers=cfg.max_answers,
                                 rng=random.Random(f"{seed}:templates"))
    return [Example(q.text, list(q.answers), q.qtype, "template") for q in written]


def retrieve(retriever: Retriever, examples: list[Example], k: int, batch_size: int) -> list[Example]:
    """Fill each example's facts and linked entities, one batched search per `batch_size` questions."""
    with tqdm(total=len(examples), unit=" q", desc="retrieve") as bar:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            for example, found in zip(chunk, retriever.search([e.question for e in chunk], k), strict=True):
                example.facts = [{key: getattr(f, key) for key in ("subject", "relation", "object", "text", "score",
                                                                   "prior")} for f in found.facts]
                example.linked = sorted({name for entity in found.linked for name in entity.names})
            bar.update(len(chunk))
    return examples


def open_retriever(cfg: DataConfig) -> RetrieverState:
    """The in-process retriever over the configured index (call .retriever(); .close() when done)."""
    settings = RetrieverSettings(data_dir=Path(cfg.retriever_data_dir), collection=cfg.retriever_collection,
                                 qdrant_url=cfg.retriever_url)
    return RetrieverState(settings=settings, encoder=Encoder.load(), metrics=Metrics("distillation"))


def write_examples(path: Path, examples: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps(asdict(example), ensure_ascii=False) + "\n")


def read_examples(path: Path) -> list[Example]:
    with open(path, encoding="utf-8") as fh:
        return [Example(**json.loads(line)) for line in fh if line.strip()]


def kg_triples(names: list[str]) -> Iterator[Triple]:
    """The triples of the KG files (or of the demo KG for "demo")."""
    for name in names:
        yield from demo_triples() if name == DEMO_KG else read_triples(Path(name))


def _retriever_source(cfg: DataConfig) -> dict:
    if cfg.retriever_url:
        return {"url": cfg.retriever_url, "collection": cfg.retriever_collection}
    return {"data_dir": str(Path(cfg.retriever_data_dir).resolve()), "collection": cfg.retriever_collection}
