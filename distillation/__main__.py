"""python -m distillation <step> [--config FILE] [--profile cpu|gpu] [--set key=value ...]"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from distillation.config import PROFILES, field_docs, load_config, save_config
from distillation.pipeline import STEPS, run
from generator_service.lm_loading import ModelLoadError

DESCRIPTION = """The offline teacher -> student distillation job of kgrag.

steps:
  data      question-answer pairs (MetaQA 1/2/3-hop dev, template questions from the KG's triples and
            questions about its relation chains), each with its top-k retrieved relation paths and
            priors, retrieved once by the path search: <run_dir>/data/train.jsonl
  teacher   fine-tune the teacher base as a RAG generator: -log sum_d p(d|x) p(y|x,d) -> models/teacher
  student   distil the teacher into a student with fewer layers (KL per fact and on the RAG marginal
            + marginal NLL) -> models/student
  evaluate  Hits@1 / exact match / latency on MetaQA 1/2/3-hop test and dev for base, teacher and student
            -> <run_dir>/eval/metrics.json, bench/results/distillation.{json,png}
  all       the four in order

Checkpoints are saved every N steps; starting a killed step again resumes from the newest one."""


def parser() -> argparse.ArgumentParser:
    rows = field_docs()
    width = max(len(key) for key, _, _ in rows)
    fields = "\n".join(f"  {key:<{width}}  {json.dumps(default)}\n  {'':<{width}}  {doc}" for key, default, doc in rows)
    p = argparse.ArgumentParser(
        prog="python -m distillation",
        description=DESCRIPTION,
        epilog=f"config fields (--set key=value; defaults = the cpu profile):\n{fields}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("step", choices=[*STEPS, "all"])
    p.add_argument("--config", type=Path, help="a JSON or TOML file of config fields (sections as tables)")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="cpu",
        help="preset sizes: cpu (a 2-core CPU) or gpu (a CUDA machine); default cpu",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (dotted key; value parsed as JSON when it parses); repeatable",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.profile, args.config, args.overrides)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    save_config(config, Path(config.run_dir) / "distillation_config.json")
    try:
        run(args.step, config)
    except (ModelLoadError, ValueError) as exc:  # a missing model, or checkpoints of another config
        logging.getLogger("distillation").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
