"""The student: the teacher's architecture and tokenizer with fewer decoder layers, initialised from
evenly spaced teacher layers (the first and the last always kept) plus the teacher's embeddings,
final norm and output head."""

from __future__ import annotations

import copy
import re

from transformers import AutoModelForCausalLM, PreTrainedModel

_LAYER_KEY = re.compile(r"^(.*\.layers\.)(\d+)(\..*)$")


def evenly_spaced(total: int, keep: int) -> list[int]:
    """`keep` of `total` layer indices, evenly spaced from the first to the last: (30, 6) -> [0, 6, 12, 17, 23, 29]."""
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    return [round(i * (total - 1) / max(keep - 1, 1)) for i in range(keep)]


def student_from_teacher(teacher: PreTrainedModel, num_layers: int) -> tuple[PreTrainedModel, list[int]]:
    """A new model with `num_layers` layers, copies of the teacher's evenly spaced ones; and their indices."""
    picked = evenly_spaced(teacher.config.num_hidden_layers, num_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in picked]
    student = AutoModelForCausalLM.from_config(config, dtype=next(teacher.parameters()).dtype)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    state = {}
    for name, tensor in teacher.state_dict().items():
        match = _LAYER_KEY.match(name)
        if match is None:
            state[name] = tensor.detach().clone()
        elif int(match[2]) in picked:
            state[f"{match[1]}{picked.index(int(match[2]))}{match[3]}"] = tensor.detach().clone()
    student.load_state_dict(state)
    return student.to(teacher.device), picked
