"""How far each input of a load got: a small JSON file beside the store, rewritten after every
stored batch, removed when the load ends. A killed load run again resumes each input at the line
after the last one whose facts were all stored, provided the file (path, size, modification
time, format) and the rules are the same; anything else starts from the beginning.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)
VERSION = 1


@dataclass(frozen=True)
class InputMark:
    line: int = 0  # every line up to this one has all its facts stored
    offset: int = 0  # byte offset (uncompressed) where line + 1 begins
    complete: bool = False  # the whole input is stored


def input_key(path: Path, fmt: str) -> dict:
    """What identifies an input: a file changed since the checkpoint is read again from the start."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format": fmt}


class Checkpoint:
    def __init__(self, path: Path, rules: str) -> None:
        self.path = Path(path)
        self.rules = rules  # the fingerprint of the rules the facts were made under

    def load(self, keys: list[dict]) -> list[InputMark]:
        """The recorded mark of each input (a fresh mark where none matches)."""
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return [InputMark() for _ in keys]
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable checkpoint %s: %s", self.path, exc)
            return [InputMark() for _ in keys]
        if saved.get("version") != VERSION or saved.get("rules") != self.rules:
            log.warning("checkpoint %s was written under other rules; starting over", self.path)
            return [InputMark() for _ in keys]
        marks = {json.dumps(e["input"], sort_keys=True): InputMark(**e["mark"]) for e in saved.get("inputs", [])}
        return [marks.get(json.dumps(key, sort_keys=True), InputMark()) for key in keys]

    def save(self, keys: list[dict], marks: list[InputMark]) -> None:
        """Written to a temporary file and renamed, so a kill leaves the old or the new one whole."""
        body = {
            "version": VERSION,
            "rules": self.rules,
            "inputs": [{"input": key, "mark": asdict(mark)} for key, mark in zip(keys, marks, strict=True)],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
