"""Question-answer files: MetaQA's `question<TAB>answer1|answer2` (with its qtype file) and JSONL
`{"question": ..., "answers": [...]}`. The topic entity may be marked `[like this]`."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

_BRACKETED = re.compile(r"\[([^\]]+)\]")
METAQA_DIR = Path(
    os.environ.get("KGRAG_METAQA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "metaqa")
)


@dataclass(frozen=True)
class Question:
    text: str
    answers: tuple[str, ...]
    qtype: str = ""

    @property
    def topic(self) -> str | None:
        match = _BRACKETED.search(self.text)
        return match.group(1) if match else None

    @property
    def stripped(self) -> str:
        return self.text.replace("[", "").replace("]", "")


def read_questions(path: Path) -> list[Question]:
    path = Path(path)
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        return [Question(r["question"], tuple(r["answers"]), r.get("qtype", "")) for r in rows]
    with open(path, encoding="utf-8", newline="") as fh:  # see the MetaQA README: no splitlines()
        rows = [line.rstrip("\r\n").split("\t") for line in fh if line.strip()]
    qtype_path = path.with_name(f"qa_{path.stem}_qtype.txt")
    qtypes = [""] * len(rows)
    if qtype_path.exists():
        with open(qtype_path, encoding="utf-8", newline="") as fh:
            qtypes = [line.strip() for line in fh if line.strip()]
    return [Question(q, tuple(a.split("|")), t) for (q, a), t in zip(rows, qtypes, strict=True)]


def metaqa_split(hops: int, split: str, data_dir: Path = METAQA_DIR) -> list[Question]:
    return read_questions(Path(data_dir) / f"{hops}-hop" / f"{split}.txt")
