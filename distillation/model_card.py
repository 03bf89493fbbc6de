"""README.md model cards of the teacher and the student: base model, data, loss, steps, metrics reached."""

from __future__ import annotations

from dataclasses import asdict

from distillation.config import TrainConfig
from distillation.training import TrainReport

EVALUATION = "## Evaluation"  # the section the evaluate step writes (and rewrites)

TEACHER_LOSS = (
    "RAG-Sequence marginal NLL over the stored top-k relation paths (a one-step path is a fact), "
    "the retriever fixed: "
    "`-log sum_d p(d|x) p(y|x,d)`, y = the answer then EOS (generator_service.marginalize)."
)
STUDENT_LOSS = (
    "`alpha T^2 [mean_k sum_t D(teacher_k,t || student_k,t) + sum_t D(P_t || Q_t)] + (1 - alpha) "
    "(-log Q(y|x))`: D on the next-token distributions of every retrieved fact k and of the "
    "RAG-Token marginals P, Q over the answer tokens, plus the student's marginal NLL of the gold "
    "answer (distillation/losses.py)."
)


def model_card(
    title: str, *, base: str, description: str, loss: str, manifest: dict, train: TrainConfig, report: TrainReport
) -> str:
    """The card's text, without its evaluation section (see with_evaluation)."""
    counts = manifest["counts"]
    sources = "\n".join(f"  - `{source}`" for source in manifest["sources"])
    if manifest.get("mixed_with"):
        sources += (
            "\n\nTrained together with the stored examples of "
            + ", ".join(f"`{path}`" for path in manifest["mixed_with"])
            + "."
        )
    return f"""# {title}

{description}

- Base: `{base}`
- Prompt: `generator_service.prompt.build_prompt` (instruction, one-shot example,
  question, one fact, "Answer:"); serve it with `generator_service.rag.RagGenerator`.

## Data

{counts["kept"]} questions with their top-k retrieved relation paths and priors (of {counts["unique"]} unique,
{counts["answer_in_documents"]} with a path ending at a gold answer); by source:
{", ".join(f"{name} {n}" for name, n in counts["by_source"].items())}. Files read:
{sources}

## Training

- Loss: {loss}
- Steps: {report.steps} optimizer steps of {train.grad_accum} x {train.batch_size} questions, AdamW lr {train.lr}
  (warm-up {train.warmup_steps}, cosine to {train.min_lr_ratio} x lr), weight decay {train.weight_decay},
  bf16 autocast: {"auto (where native)" if train.bf16 is None else train.bf16}
- Loss reached: {report.first_loss:.4f} at the start -> {report.final_loss:.4f} at the end (means of 10 steps, fewer
  in short runs)
- Run: {_run(report)}

The resolved configuration is `distillation_config.json` beside this card.

{EVALUATION}

Not evaluated yet (`python -m distillation evaluate`).
"""


def with_evaluation(card: str, rows: list[dict]) -> str:
    """The card with its evaluation section replaced by this model's metric rows."""
    head = card.split(EVALUATION)[0].rstrip()
    lines = [
        "| split | hops | questions | Hits@1 | exact match | ms per answer |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        latency = f"{row['latency_ms_per_answer']:.1f}" if "latency_ms_per_answer" in row else "not timed"
        lines.append(
            f"| {row['split']} | {row.get('hops', 1)} | {row['questions']} | {row['hits@1']:.4f} | "
            f"{row['exact_match']:.4f} | {latency} |"
        )
    notes = {row["note"] for row in rows if row.get("note")}
    return "\n".join([head, "", EVALUATION, "", *lines, "", *sorted(notes), ""])


def _run(report: TrainReport) -> str:
    fields = asdict(report)
    return ", ".join(
        f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in fields.items()
        if name not in ("first_loss", "final_loss")
    )
