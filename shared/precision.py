"""Whether bfloat16 is native on a device: CUDA, or a CPU with AMX / AVX512-BF16 (oneDNN).

Elsewhere (an AVX2-only CPU, say) torch emulates bf16, and bf16 autocast runs many times slower
than float32, so every "auto" bf16 choice of the project asks here.
"""

from __future__ import annotations

import torch


def native_bf16(device: torch.device | str = "cpu") -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_bf16(setting: bool | None, device: torch.device | str = "cpu") -> bool:
    """An explicit setting as given; None (auto) when bf16 is native on the device."""
    return native_bf16(device) if setting is None else setting
