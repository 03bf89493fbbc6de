"""Rows of a batch, shared by the generator's decoding and the distillation's training forward:
token id lists right-padded into one tensor, their real positions, and a KV cache's rows selected."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PretrainedConfig


def right_pad(
    sequences: Sequence[Sequence[int]], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as a (B, T_max) tensor right-padded with id 0 (always masked out), and their lengths (B,)."""
    lengths = torch.tensor([len(seq) for seq in sequences], device=device)  # (B,)
    padded = torch.zeros(len(sequences), max(int(lengths.max()), 1), dtype=torch.long, device=device)  # (B, T)
    for row, seq in enumerate(sequences):
        padded[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
    return padded, lengths


def real_positions(width: int, lengths: torch.Tensor) -> torch.Tensor:
    """(N, width) bool, True for the first lengths[n] columns of row n: the real tokens of right-padded rows."""
    return torch.arange(width, device=lengths.device) < lengths[:, None]  # (N, width)


def select_cache_rows(cache: DynamicCache, index: torch.Tensor, config: PretrainedConfig) -> DynamicCache:
    """A new cache whose row i is row index[i] of `cache` (left as is); differentiable outside inference mode."""
    layers = [(keys.index_select(0, index), values.index_select(0, index)) for keys, values, *_ in cache]
    return DynamicCache(layers, config=config)
