"""The evaluate step: Hits@1 and exact match per question type, and latency per answer, on MetaQA
1/2/3-hop test (evaluation only) and dev, for the base model, the teacher and the student.

Accuracy: each split's and hop count's questions (a seeded sample of each) are retrieved once by the
path search, as the retriever service answers them, then every model answers them with
`generator_service.rag.RagGenerator`, eval.batch_size questions per `generate` call (all their paths
decode together), constrained to the ends of the retrieved paths as the generator service does. A
question the retriever abstained on gets no answer (a miss). Hits@1: the answer equals a gold
answer after `shared.names.fold`; exact match: it equals one as written.

Latency: a separate timed pass over a seeded sample of test questions, every model of the run one
after the other in the same process, so their figures compare; the wall time of the `generate`
calls over the questions they answered, after one warm-up call. A run can measure accuracy only
(beside a training job, whose load would distort timings) and a later run latency only: results
merge by model and split into bench/results/distillation.json.

Ceilings are reported beside the figures: the share of questions whose retrieved paths end at a gold
answer (a constrained generator can do no better), and for 1-hop the share whose gold answer is
joined to the topic entity by a KG triple. MetaQA 1-hop dev is quoted as 9,776 of 9,992 answerable;
counting with fold-normalised names (case, accents and punctuation ignored) gives 9,805.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from distillation.config import DistillConfig, EvalConfig, save_config
from distillation.data import Example, PathRetriever, kg_triples, retrieve, write_examples
from distillation.model_card import with_evaluation
from generator_service.lm_loading import load_causal_lm, teacher_gguf_path
from generator_service.rag import RagGenerator, RagRequest
from shared.names import fold
from shared.qa_data import Question, metaqa_split

log = logging.getLogger(__name__)
MODELS = ("base", "teacher", "student")
DEV_NOTE = (
    "dev: only 9,776 of the 9,992 MetaQA 1-hop dev questions are answerable from the graph (ceiling 0.978; "
    "counted here with fold-normalised names: {counted}); the teacher and the student were trained on dev "
    "questions, so their dev figures are in-sample."
)


def run_evaluate(config: DistillConfig, retriever: PathRetriever) -> dict:
    """Measure every configured model (accuracy per split, latency); merge into earlier results; write
    the metrics JSON, the plot and the model cards."""
    cfg = config.eval
    splits, ceilings = _accuracy_splits(config, retriever) if "accuracy" in cfg.measure else ({}, {})
    timed = _latency_examples(config, retriever) if "latency" in cfg.measure else []
    notes = (
        {"dev": DEV_NOTE.format(counted=ceilings["dev/1-hop"]["graph_answerable"])} if "dev/1-hop" in ceilings else {}
    )
    rows, latency, run_id = [], {}, time.strftime("%Y-%m-%dT%H:%M:%S")
    for name, source in _model_sources(config).items():
        if source is None:
            log.warning("evaluate: no %s model, skipped", name)
            continue
        generator = RagGenerator(
            load_causal_lm(source, cache_dir=Path(config.lm_cache_dir), dtype=cfg.dtype, device=config.device)
        )
        rows.extend(_accuracy_rows(name, generator, splits, cfg, notes))
        if timed:
            latency[name] = _latency(name, generator, timed, cfg, run_id)
        del generator
    result = _merge(
        _previous(config),
        {
            "machine": _machine(),
            "eval": cfg.model_dump(),
            "ceilings": ceilings,
            "rows": rows,
            "latency": latency,
            "notes": notes,
        },
    )
    _write_results(config, result)
    _update_cards(config, result["rows"])
    return result


def _accuracy_splits(config: DistillConfig, retriever: PathRetriever) -> tuple[dict[str, list[Example]], dict]:
    """The examples of each configured split and hop count ("test/2-hop"; a seeded sample, retrieved once) and
    their ceilings."""
    cfg, out = config.eval, Path(config.run_dir) / "eval"
    neighbours = _neighbours(config.data.kg_files) if 1 in cfg.hops else {}
    splits, ceilings = {}, {}
    for split, hops in [(split, hops) for split in cfg.splits for hops in cfg.hops]:
        name = f"{split}/{hops}-hop"
        questions = metaqa_split(hops, split, Path(config.data.metaqa_dir))
        limit = cfg.max_questions if split == "test" else cfg.max_dev_questions
        seed = f"{config.seed}:eval:{split}" if hops == 1 else f"{config.seed}:eval:{name}"
        sample = _sample(questions, limit, seed)
        splits[name] = _retrieved(retriever, sample, split, hops, config)
        write_examples(out / f"{split}-{hops}hop.jsonl", splits[name])
        ceilings[name] = _ceilings(questions, sample, splits[name], neighbours if hops == 1 else None)
    return splits, ceilings


def _latency_examples(config: DistillConfig, retriever: PathRetriever) -> list[Example]:
    """The seeded sample of test questions of the timed pass, the same number of each hop count, retrieved."""
    per_hop = max(1, config.eval.latency_questions // len(config.eval.hops))
    examples = []
    for hops in config.eval.hops:
        questions = metaqa_split(hops, "test", Path(config.data.metaqa_dir))
        sample = _sample(questions, per_hop, f"{config.seed}:latency" if hops == 1 else f"{config.seed}:latency:{hops}")
        examples += [e for e in _retrieved(retriever, sample, "test", hops, config) if _answerable(e)]
    return examples


def _retrieved(
    retriever: PathRetriever, questions: list[Question], split: str, hops: int, config: DistillConfig
) -> list[Example]:
    examples = [Example.of_metaqa(q, split, hops) for q in questions]
    return retrieve(retriever, examples, config.data.top_k, config.data.retrieval_batch_size)


def _answerable(example: Example) -> bool:
    """The generator answers a question the retriever found paths for and did not abstain on."""
    return bool(example.documents) and not example.abstained


def _accuracy_rows(
    name: str, generator: RagGenerator, splits: dict[str, list[Example]], cfg: EvalConfig, notes: dict[str, str]
) -> list[dict]:
    rows = []
    for split_hops, examples in splits.items():
        split, hops = split_hops.split("/")
        predictions, seconds = answer(generator, examples, cfg, f"{name} {split_hops}")
        row = {
            "model": name,
            "split": split,
            "hops": int(hops[0]),
            **score(examples, predictions),
            "seconds": round(seconds, 1),
            "note": notes.get(split, "") if hops == "1-hop" else "",
        }
        log.info(
            "%s %s: Hits@1 %.4f, EM %.4f (%d questions, %.0f s)",
            name,
            split_hops,
            row["hits@1"],
            row["exact_match"],
            row["questions"],
            seconds,
        )
        rows.append(row)
    return rows


def _latency(name: str, generator: RagGenerator, examples: list[Example], cfg: EvalConfig, run_id: str) -> dict:
    """Latency per answer over the timed pass (after one warm-up call), overall and for each hop count's questions
    (answered in calls of their own hop count)."""
    by_hops, total = {}, 0.0
    for hops in sorted({e.source for e in examples}):
        own = [e for e in examples if e.source == hops]
        _, seconds = answer(generator, own, cfg, f"{name} timed {hops}")
        by_hops[hops.split("/")[1][0]], total = round(1000 * seconds / max(len(own), 1), 2), total + seconds
    ms = 1000 * total / max(len(examples), 1)
    log.info("%s: %.1f ms per answer (%d questions, %d per call): %s", name, ms, len(examples), cfg.batch_size, by_hops)
    return {
        "ms_per_answer": round(ms, 2),
        "by_hops": by_hops,
        "questions": len(examples),
        "batch_size": cfg.batch_size,
        "threads": torch.get_num_threads(),
        "run": run_id,
    }


def answer(
    generator: RagGenerator, examples: list[Example], cfg: EvalConfig, desc: str = "answer"
) -> tuple[list[str], float]:
    """Each example's answer ("" when the retriever found no path or abstained), and the seconds spent in the
    timed generate calls."""
    requests = {
        i: RagRequest(
            e.question,
            e.texts,
            e.log_priors,
            mode=cfg.mode,
            max_new_tokens=cfg.max_new_tokens,
            allowed_answers=e.candidates() if cfg.constrain else None,
        )
        for i, e in enumerate(examples)
        if _answerable(e)
    }
    order = list(requests)
    if order:
        generator.generate([requests[order[0]]])  # warm-up: the head's KV cache, first-call allocations
    predictions, seconds = [""] * len(examples), 0.0
    for start in tqdm(range(0, len(order), cfg.batch_size), desc=desc, unit="call", mininterval=10):
        chunk = order[start : start + cfg.batch_size]
        begin = time.perf_counter()
        with torch.inference_mode():
            results = generator.generate([requests[i] for i in chunk])
        seconds += time.perf_counter() - begin
        for i, result in zip(chunk, results, strict=True):
            predictions[i] = result.answer
    return predictions, seconds


def score(examples: list[Example], predictions: list[str]) -> dict:
    """Hits@1 and exact match overall and per question type."""
    hits = [fold(p) in {fold(a) for a in e.answers} for e, p in zip(examples, predictions, strict=True)]
    exact = [p.strip() in e.answers for e, p in zip(examples, predictions, strict=True)]
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_type[example.qtype].append(i)
    return {
        "questions": len(examples),
        "hits@1": sum(hits) / max(len(examples), 1),
        "exact_match": sum(exact) / max(len(examples), 1),
        "by_qtype": {
            qtype: {
                "questions": len(ids),
                "hits@1": sum(hits[i] for i in ids) / len(ids),
                "exact_match": sum(exact[i] for i in ids) / len(ids),
            }
            for qtype, ids in sorted(by_type.items())
        },
    }


def _ceilings(
    questions: list[Question], sample: list[Question], examples: list[Example], neighbours: dict[str, set[str]] | None
) -> dict:
    """The retrieval ceiling on the sample (a retrieved path ends at a gold answer, no abstention), the share
    abstained on, and with `neighbours` (1-hop) the graph ceiling on the whole split and on the sample."""
    out = {
        "retrieved_answer_sample": sum(_answerable(e) and e.gold_target() is not None for e in examples)
        / max(len(examples), 1),
        "abstained_sample": sum(e.abstained for e in examples) / max(len(examples), 1),
    }
    if neighbours is None:
        return out

    def in_graph(q: Question) -> bool:
        if not q.topic:
            return False
        return bool(neighbours.get(fold(q.topic), set()) & {fold(a) for a in q.answers})

    return {
        "graph_answerable": f"{sum(map(in_graph, questions))} of {len(questions)}",
        "graph_answerable_sample": sum(map(in_graph, sample)) / max(len(sample), 1),
        **out,
    }


def _neighbours(kg_files: list[str]) -> dict[str, set[str]]:
    """Folded entity name -> the folded names joined to it by a triple (either direction)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for t in kg_triples(kg_files):
        graph[fold(t.subject)].add(fold(t.object))
        graph[fold(t.object)].add(fold(t.subject))
    return graph


def _sample(questions: list[Question], limit: int | None, seed: str) -> list[Question]:
    if limit is None or len(questions) <= limit:
        return questions
    return [questions[i] for i in sorted(random.Random(seed).sample(range(len(questions)), limit))]


def _model_sources(config: DistillConfig) -> dict[str, str | Path | None]:
    """The model of each configured row: base (a directory or a GGUF), teacher, student (None when absent)."""
    trained = {"teacher": Path(config.teacher_dir), "student": Path(config.student_dir)}
    sources = {
        "base": config.teacher_base or teacher_gguf_path(),
        **{name: path if (path / "config.json").is_file() else None for name, path in trained.items()},
    }
    return {name: sources[name] for name in config.eval.models}


def _previous(config: DistillConfig) -> dict:
    path = Path(config.results_dir) / "distillation.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _merge(previous: dict, new: dict) -> dict:
    """new's rows, latencies, ceilings and notes, with previous's for the models and splits new did not measure;
    each test row carries its model's latency, and the student's speed-up over the teacher is given when both
    were timed in the same run."""

    def key(row: dict) -> tuple:
        return row["model"], row["split"], row.get("hops", 1)

    measured = {key(row) for row in new["rows"]}
    rows = [row for row in previous.get("rows", []) if key(row) not in measured] + new["rows"]
    rows.sort(key=lambda row: (MODELS.index(row["model"]), row["split"] != "test", row.get("hops", 1)))
    latency = {**previous.get("latency", {}), **new["latency"]}
    for row in rows:
        row.pop("latency_ms_per_answer", None)
        if row["split"] == "test" and row["model"] in latency:
            by_hops = latency[row["model"]].get("by_hops", {})
            row["latency_ms_per_answer"] = by_hops.get(str(row.get("hops", 1)), latency[row["model"]]["ms_per_answer"])
    merged = {
        **previous,
        **new,
        "rows": rows,
        "latency": latency,
        "ceilings": {**previous.get("ceilings", {}), **new["ceilings"]},
        "notes": {**previous.get("notes", {}), **new["notes"]},
    }
    teacher, student = latency.get("teacher"), latency.get("student")
    merged.pop("student_speedup", None)
    if teacher and student and teacher["run"] == student["run"]:
        merged["student_speedup"] = round(teacher["ms_per_answer"] / student["ms_per_answer"], 2)
    return merged


def _machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def _write_results(config: DistillConfig, result: dict) -> None:
    out, results = Path(config.run_dir) / "eval", Path(config.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    for path in (out / "metrics.json", results / "distillation.json"):
        path.write_text(json.dumps(result, indent=2) + "\n")
    save_config(config, out / "distillation_config.json")
    try:
        for path in (out / "hits_vs_latency.png", results / "distillation.png"):
            plot(result["rows"], path)
    except ImportError:  # matplotlib is a dev extra; the docker image does not install it
        log.warning("matplotlib is not installed (pip install -e '.[dev]'): no plot written")


def plot(rows: list[dict], path: Path) -> None:
    """Hits@1 on test against latency per answer, one point per timed model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        row for row in rows if row["split"] == "test" and "latency_ms_per_answer" in row and row.get("hops", 1) == 1
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["latency_ms_per_answer"] for r in points], [r["hits@1"] for r in points])
    for r in points:
        ax.annotate(
            f"{r['model']} ({r['hits@1']:.4f})",
            (r["latency_ms_per_answer"], r["hits@1"]),
            textcoords="offset points",
            xytext=(5, 3),
        )
    hits = [r["hits@1"] for r in points] or [0.0]
    pad = max(0.01, (max(hits) - min(hits)) / 4)  # a span of 2 points at least: tiny gaps do not fill the plot
    ax.set_ylim(min(hits) - pad, max(hits) + pad)
    ax.set_xlabel("latency per answer (ms, batched)")
    ax.set_ylabel("Hits@1, MetaQA 1-hop test")
    ax.set_xlim(0, 1.3 * max([r["latency_ms_per_answer"] for r in points], default=1))  # room for the labels
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _update_cards(config: DistillConfig, rows: list[dict]) -> None:
    for name, directory in (("teacher", config.teacher_dir), ("student", config.student_dir)):
        card = Path(directory) / "README.md"
        mine = [row for row in rows if row["model"] == name]
        if mine and card.is_file():
            card.write_text(with_evaluation(card.read_text(), mine))
