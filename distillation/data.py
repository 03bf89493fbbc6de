"""The data step: question-answer pairs with their retrieved documents, stored once as JSONL.

Questions: MetaQA 1-, 2- and 3-hop dev (never test), template questions written from the KG's
triples (templates.py) and questions about the KG's relation chains
(`retriever_service.question_generation`). Each question is searched once with the in-process
path search (batched), as the retriever service would answer it (`path_replies.search_replies`):
its top-k relation paths (a one-step path is one fact) with their priors p(d|x), the answer set and
whether it abstained; training reads `data/train.jsonl` and never calls the retriever.
`data/manifest.json` records every file read, the counts and the seed.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from distillation.config import DataConfig, DistillConfig, save_config
from distillation.templates import template_questions
from retriever_service.demo_kg import demo_triples
from retriever_service.encoder import Encoder
from retriever_service.entity_linking import ALIAS_RELATIONS
from retriever_service.kg_graph import KGGraph
from retriever_service.path_replies import search_replies
from retriever_service.question_generation import chain_questions
from retriever_service.readers import read_triples
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.facts import Evidence, Triple, candidate_names
from shared.metrics import Metrics
from shared.names import fold
from shared.qa_data import Question, metaqa_split
from shared.retriever_api import PathOptions, PathSearchResponse

log = logging.getLogger(__name__)
DEMO_KG = "demo"  # in data.kg_files: the countries KG of retriever_service.demo_kg
PathRetriever = Callable[[list[str], int], list[PathSearchResponse]]  # (questions, k) -> the service's replies


@dataclass
class Example:
    question: str  # as the retriever and the model see it (MetaQA's [brackets] removed)
    answers: list[str]  # every gold answer
    qtype: str  # question type: MetaQA's, or the template's
    source: str  # "metaqa/2-hop/dev", "metaqa/1-hop/test", "template" or "chain"
    documents: list[dict] = field(default_factory=list)  # retrieved paths, best first: text, end, chain, score, prior
    linked: list[str] = field(default_factory=list)  # KG names of the entities linked in the question
    answer_set: list[str] = field(default_factory=list)  # the retriever's answer set (empty when it abstained)
    abstained: bool = False  # the retriever found the graph has no answer
    target: str | None = None  # the training answer: the end of the best-ranked path that is a gold answer

    @property
    def log_priors(self) -> list[float]:
        """log p(d|x) of the documents (a prior that underflowed to 0 is -inf), as the generator's API computes them."""
        return [math.log(d["prior"]) if d["prior"] > 0 else -math.inf for d in self.documents]

    @property
    def texts(self) -> list[str]:
        return [d["text"] for d in self.documents]

    def candidates(self) -> list[str]:
        """The names a constrained answer may be, as the generator service allows them (its paths' ends)."""
        documents = [Evidence(d["text"], (d["end"],), d["prior"]) for d in self.documents]
        return candidate_names(documents, set(self.linked), answer_set=set(self.answer_set))

    @classmethod
    def of_metaqa(cls, question: Question, split: str, hops: int) -> Example:
        """A MetaQA question of `split`, brackets stripped."""
        return cls(question.stripped, list(question.answers), question.qtype, f"metaqa/{hops}-hop/{split}")

    def gold_target(self) -> str | None:
        """The end of the first path (best first) that folds to a gold answer."""
        gold = {fold(answer) for answer in self.answers}
        return next((d["end"] for d in self.documents if fold(d["end"]) in gold), None)

    def fill(self, reply: PathSearchResponse) -> None:
        """The retriever's reply as this example's documents, linked entities, answer set and verdict."""
        self.documents = [
            {"text": p.text, "end": p.steps[-1].entity, "chain": p.chain, "score": p.score, "prior": p.prior}
            for p in reply.paths
        ]
        self.linked = sorted({name for entity in reply.linked for name in entity.names})
        self.answer_set = [a.name for a in reply.answers]
        self.abstained = reply.abstain


def run_data(config: DistillConfig, retriever: PathRetriever) -> dict:
    """Write data/train.jsonl and data/manifest.json under the run directory; returns the manifest."""
    cfg, out = config.data, Path(config.run_dir) / "data"
    sources: list[str] = []
    questions = (
        dev_questions(cfg, config.seed, sources)
        + kg_questions(cfg, config.seed, sources)
        + kg_chain_questions(cfg, config.seed)
    )
    by_key: dict[str, Example] = {}
    for question in questions:
        by_key.setdefault(fold(question.question), question)  # the first of each folded text is kept
    unique = list(by_key.values())
    examples = retrieve(retriever, unique, cfg.top_k, cfg.retrieval_batch_size)
    for example in examples:
        example.target = example.gold_target()
    kept = [e for e in examples if e.target is not None or not cfg.require_answer_in_documents]
    write_examples(out / "train.jsonl", kept)
    manifest = {
        "sources": sources,
        "retriever": _retriever_source(cfg),
        "seed": config.seed,
        "counts": {
            "questions": len(questions),
            "unique": len(unique),
            "answer_in_documents": sum(e.target is not None for e in examples),
            "abstained": sum(e.abstained for e in examples),
            "kept": len(kept),
            "by_source": {s: sum(e.source == s for e in kept) for s in sorted({e.source for e in kept})},
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    save_config(config, out / "distillation_config.json")
    log.info("data: %s", manifest["counts"])
    return manifest


def dev_questions(cfg: DataConfig, seed: int, sources: list[str]) -> list[Example]:
    """A seeded sample of each configured hop count's MetaQA dev questions; the files read go to `sources`."""
    if cfg.max_metaqa_questions <= 0:
        return []
    examples: list[Example] = []
    for hops in cfg.hops:
        path = Path(cfg.metaqa_dir) / f"{hops}-hop" / "dev.txt"
        questions = metaqa_split(hops, "dev", Path(cfg.metaqa_dir))
        sources.extend(str(p.resolve()) for p in (path, path.with_name("qa_dev_qtype.txt")) if p.exists())
        if len(questions) > cfg.max_metaqa_questions:
            rng = random.Random(f"{seed}:metaqa" if hops == 1 else f"{seed}:metaqa:{hops}")
            questions = [questions[i] for i in sorted(rng.sample(range(len(questions)), cfg.max_metaqa_questions))]
        examples.extend(Example.of_metaqa(q, "dev", hops) for q in questions)
    return examples


def kg_questions(cfg: DataConfig, seed: int, sources: list[str]) -> list[Example]:
    """Template questions from the KG files; the files read are appended to `sources`."""
    if cfg.max_template_questions <= 0:
        return []
    sources.extend(DEMO_KG if name == DEMO_KG else str(Path(name).resolve()) for name in cfg.kg_files)
    written = template_questions(
        kg_triples(cfg.kg_files),
        limit=cfg.max_template_questions,
        phrasings=cfg.phrasings_per_pair,
        max_answers=cfg.max_answers,
        rng=random.Random(f"{seed}:templates"),
    )
    return [Example(q.text, list(q.answers), q.qtype, "template") for q in written]


def kg_chain_questions(cfg: DataConfig, seed: int) -> list[Example]:
    """Questions about the KG's relation chains of up to two steps, in the phrasings the chain prior is fitted on
    for a KG without questions (`retriever_service.question_generation`)."""
    if cfg.chain_questions <= 0:
        return []
    graph = KGGraph.of((t.payload() for t in kg_triples(cfg.kg_files)), ALIAS_RELATIONS)
    written = chain_questions(
        graph, max_hops=2, per_chain=5, max_answers=cfg.max_answers, rng=random.Random(f"{seed}:chains")
    )
    random.Random(f"{seed}:chains").shuffle(written)
    return [Example(q.text, list(q.answers), q.chain, "chain") for q in written[: cfg.chain_questions]]


def retrieve(retriever: PathRetriever, examples: list[Example], k: int, batch_size: int) -> list[Example]:
    """Fill each example from the retriever's reply, one batched search per `batch_size` questions."""
    with tqdm(total=len(examples), unit=" q", desc="retrieve") as bar:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            for example, reply in zip(chunk, retriever([e.question for e in chunk], k), strict=True):
                example.fill(reply)
            bar.update(len(chunk))
    return examples


def path_retriever(state: RetrieverState) -> PathRetriever:
    """The path search of an in-process retriever state, answering as the service does."""

    def replies(questions: list[str], k: int) -> list[PathSearchResponse]:
        return search_replies(state.path_search(), state.settings, questions, PathOptions(k=k))

    return replies


def open_retriever(cfg: DataConfig) -> RetrieverState:
    """The in-process retriever over the configured index (`path_retriever` of it; .close() when done)."""
    settings = RetrieverSettings(
        data_dir=Path(cfg.retriever_data_dir), collection=cfg.retriever_collection, qdrant_url=cfg.retriever_url
    )
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
