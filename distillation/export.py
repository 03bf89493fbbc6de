"""A trained model as an ordinary transformers directory: safetensors weights, config.json,
generation_config.json, tokenizer files, README.md model card and the resolved distillation config.

The directory is written beside its target and swapped in with renames, so a reader (the generator
loads `models/student`) sees the old model or the new one, never half of one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from distillation.config import DistillConfig, save_config


def export_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path, config: DistillConfig, card: str
) -> Path:
    directory = Path(directory)
    tmp, old = directory.with_name(f".{directory.name}.tmp"), directory.with_name(f".{directory.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)  # model.safetensors, config.json, generation_config.json
    tokenizer.save_pretrained(tmp)
    save_config(config, tmp / "distillation_config.json")
    (tmp / "README.md").write_text(card)
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory
