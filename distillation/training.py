"""The training loop shared by the teacher and the student: AdamW, warm-up + cosine LR, gradient
accumulation, bf16 autocast, a progress bar, and checkpoints that resume exactly.

The data order is a function of (seed, micro-batch index): epoch e is a shuffle seeded by (seed, e)
and micro-batch m is slice m mod (examples // batch_size) of epoch m // (examples // batch_size).
A checkpoint at optimizer step s holds the model, the optimizer, the scheduler, the RNG states and
the data position (micro-batch s * grad_accum), so a run killed after it and started again
continues with the same batches from the same state and ends with the same weights as a run that
was never stopped (on the same device, with the same thread count).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from distillation.config import DistillConfig, TrainConfig, save_config
from distillation.data import Example
from shared.precision import resolve_bf16

log = logging.getLogger(__name__)
LossFn = Callable[[list[Example]], tuple[torch.Tensor, int, dict[str, float]]]  # -> loss, tokens fed, parts to log
_BOOKKEEPING = ("checkpoint_every", "keep_checkpoints", "resume")  # may change between a run and its resume


@dataclass
class TrainReport:
    steps: int  # optimizer steps reached
    first_loss: float  # mean loss of the first 10 steps (of the first half, for fewer than 20 steps)
    final_loss: float  # mean loss of the last 10 steps (of the last half, for fewer than 20 steps)
    resumed_from: int  # the checkpoint step this process started from (0: from scratch)
    seconds_per_step: float  # wall time per step of the steps this process ran (nan if none)
    tokens_per_s: float  # tokens fed per second over those steps (nan if none)


def train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    examples: list[Example],
    cfg: TrainConfig,
    *,
    out_dir: Path,
    config: DistillConfig,
    desc: str,
) -> TrainReport:
    """Train `model` in place for cfg.steps optimizer steps; checkpoints and log.jsonl go to out_dir."""
    if not examples:
        raise ValueError("no training examples")
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = LambdaLR(optimizer, partial(lr_factor, cfg))
    start = _start(model, optimizer, scheduler, cfg, out_dir, config.seed)
    device = next(model.parameters()).device
    autocast = partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=resolve_bf16(cfg.bf16, device))
    seconds = 0.0
    tokens: float = 0  # a count (an int), summed from the logged stats, which are typed float
    with tqdm(total=cfg.steps, initial=start, desc=desc, unit="step") as bar, open(out_dir / "log.jsonl", "a") as out:
        for step in range(start, cfg.steps):
            stats = _optimizer_step(model, loss_fn, examples, cfg, step, config.seed, optimizer, scheduler, autocast)
            seconds, tokens = seconds + stats["seconds"], tokens + stats["tokens"]
            out.write(json.dumps({"step": step + 1, **stats}) + "\n")
            out.flush()
            bar.set_postfix(
                loss=f"{stats['loss']:.4f}", tok_s=f"{stats['tokens'] / stats['seconds']:.0f}", lr=f"{stats['lr']:.2e}"
            )
            bar.update()
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                save_checkpoint(out_dir / "checkpoints", step + 1, model, optimizer, scheduler, cfg, config)
    losses = [row["loss"] for row in read_log(out_dir / "log.jsonl")]
    window, ran = max(1, min(10, len(losses) // 2)), cfg.steps - start
    return TrainReport(
        steps=cfg.steps,
        first_loss=float(np.mean(losses[:window])) if losses else math.nan,
        final_loss=float(np.mean(losses[-window:])) if losses else math.nan,
        resumed_from=start,
        seconds_per_step=seconds / ran if ran else math.nan,
        tokens_per_s=tokens / seconds if seconds else math.nan,
    )


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The LR multiplier at `step` (0-based): linear warm-up to 1, then cosine down to cfg.min_lr_ratio."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps - 1)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def batch_indices(count: int, batch_size: int, micro_batch: int, seed: int) -> list[int]:
    """The example indices of micro-batch `micro_batch` (see the module docstring)."""
    per_epoch = max(1, count // batch_size)
    epoch, index = divmod(micro_batch, per_epoch)
    return list(_epoch_order(count, seed, epoch)[index * batch_size : (index + 1) * batch_size])


@lru_cache(maxsize=2)
def _epoch_order(count: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(count))
    random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return tuple(order)


def _optimizer_step(
    model,
    loss_fn: LossFn,
    examples: list[Example],
    cfg: TrainConfig,
    step: int,
    seed: int,
    optimizer,
    scheduler,
    autocast,
) -> dict[str, float]:
    """One optimizer step over cfg.grad_accum micro-batches; returns what is logged."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    lr = optimizer.param_groups[0]["lr"]
    begin, tokens = time.perf_counter(), 0
    totals: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        indices = batch_indices(len(examples), cfg.batch_size, step * cfg.grad_accum + micro, seed)
        with autocast():
            loss, fed, parts = loss_fn([examples[i] for i in indices])
        (loss / cfg.grad_accum).backward()
        tokens += fed
        for name, value in {"loss": float(loss.detach()), **parts}.items():
            totals[name] = totals.get(name, 0.0) + value / cfg.grad_accum
    if cfg.max_grad_norm > 0:
        totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
    optimizer.step()
    scheduler.step()
    return {**totals, "lr": lr, "tokens": tokens, "seconds": time.perf_counter() - begin}


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (embeddings included), none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def _start(model, optimizer, scheduler, cfg: TrainConfig, out_dir: Path, seed: int) -> int:
    """The step to start from: the newest checkpoint's (restored in place), or 0 after seeding everything."""
    checkpoints = out_dir / "checkpoints"
    newest = sorted(checkpoints.glob("step-*")) if cfg.resume else []
    if not newest:
        shutil.rmtree(checkpoints, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "log.jsonl").write_text("")
        _seed_everything(seed)
        return 0
    state = torch.load(newest[-1] / "state.pt", map_location="cpu", weights_only=False)
    if _resumable(state["train_config"]) != _resumable(cfg.model_dump()) or state["seed"] != seed:
        raise ValueError(
            f"{newest[-1]} was written with another config or seed; delete {checkpoints} "
            "or start over with --set <section>.resume=false"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_states(state["rng"])
    rows = [row for row in read_log(out_dir / "log.jsonl") if row["step"] <= state["step"]]
    (out_dir / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    log.info("resuming from %s (step %d)", newest[-1], state["step"])
    return state["step"]


def save_checkpoint(
    directory: Path, step: int, model, optimizer, scheduler, cfg: TrainConfig, config: DistillConfig
) -> Path:
    """directory/step-NNNNNN/{state.pt, distillation_config.json}, written whole or not at all; old ones pruned."""
    final = directory / f"step-{step:06d}"
    tmp = directory / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(
        {
            "step": step,
            "data_position": {"micro_batch": step * cfg.grad_accum, "batch_size": cfg.batch_size},
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_states(),
            "train_config": cfg.model_dump(),
            "seed": config.seed,
        },
        tmp / "state.pt",
    )
    save_config(config, tmp / "distillation_config.json")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(directory.glob("step-*"))[: -cfg.keep_checkpoints]:
        shutil.rmtree(old)
    return final


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _resumable(train_config: dict) -> dict:
    return {k: v for k, v in train_config.items() if k not in _BOOKKEEPING}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA generators included


def _rng_states() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
