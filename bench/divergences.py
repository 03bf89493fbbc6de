"""Which distillation divergence serves best: the finished student trained further with forward KL,
reverse KL and JSD(beta), the same steps each, then evaluated on MetaQA 1-hop dev.

    python -m bench.divergences [--steps 40] [--lr 1e-4] [--dev-questions 1000] [--threads 2]

Needs the distillation job's data (var/distill/data), teacher (models/teacher) and student
(models/student, the starting point: a student trained from the teacher's layers needs hundreds of
steps before divergences can be told apart, more than three runs of this CPU budget allow). Only
`student.divergence` changes between runs. Each run is the job's own CLI (`python -m distillation
student`, then `evaluate` on dev only) in its own run directory under var/divergences/, so a rerun
resumes or reuses what is there. Dev questions were training data (a run of N steps sees N x 16 of
the 13.7k stored examples), so the figures compare the divergences with each other; they are not
held-out accuracies. Prints a table and writes bench/results/divergences.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.provenance import stamp

DIVERGENCES = ("forward", "reverse", "jsd")
RESULTS = Path("bench/results")


def distill(step: str, overrides: list[str]) -> None:
    command = [sys.executable, "-m", "distillation", step, "--profile", "cpu"]
    for override in overrides:
        command += ["--set", override]
    subprocess.run(command, check=True)


def compare(divergence: str, args: argparse.Namespace) -> dict:
    """Train the starting student further with this divergence (or resume), evaluate it on dev; its row."""
    run_dir = Path("var/divergences") / divergence
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "data").exists():
        (run_dir / "data").symlink_to(Path(args.data).resolve(), target_is_directory=True)
    common = [
        f"run_dir={run_dir}",
        f"student_dir={run_dir / 'model'}",
        f"results_dir={run_dir / 'results'}",
        f"torch_threads={args.threads}",
        f"student.divergence={divergence}",
        f"student.init_from={args.start}",
    ]
    start = time.perf_counter()
    distill(
        "student",
        common
        + [
            f"student.train.steps={args.steps}",
            f"student.train.lr={args.lr}",
            f"student.train.warmup_steps={max(1, args.steps // 10)}",
        ],
    )
    seconds = time.perf_counter() - start
    distill(
        "evaluate",
        common
        + [
            'eval.models=["student"]',
            'eval.splits=["dev"]',
            'eval.measure=["accuracy"]',
            f"eval.max_dev_questions={args.dev_questions}",
        ],
    )
    [row] = json.loads((run_dir / "results" / "distillation.json").read_text())["rows"]
    log = [json.loads(line) for line in (run_dir / "student" / "log.jsonl").read_text().splitlines()]
    return {
        "divergence": divergence,
        "steps": args.steps,
        "lr": args.lr,
        "dev_questions": row["questions"],
        "hits@1": row["hits@1"],
        "exact_match": row["exact_match"],
        "final_nll": sum(r["nll"] for r in log[-10:]) / len(log[-10:]),
        "train_seconds": round(seconds),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="student optimizer steps per divergence")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of each run")
    p.add_argument("--dev-questions", type=int, default=1000, help="seeded sample of MetaQA 1-hop dev")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each run")
    p.add_argument("--start", default="models/student", help="the student every run starts from")
    p.add_argument("--data", default="var/distill/data", help="the data step's output to train on")
    args = p.parse_args()
    rows = [compare(divergence, args) for divergence in DIVERGENCES]
    print(f"from {args.start}, {args.steps} steps each at lr {args.lr}")
    print("| divergence | steps | dev questions | Hits@1 | exact match | marginal NLL (last 10 steps) | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['divergence']} | {r['steps']} | {r['dev_questions']} | {r['hits@1']:.4f} | {r['exact_match']:.4f} "
            f"| {r['final_nll']:.4f} | {r['train_seconds']} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "divergences.json").write_text(json.dumps(stamp({"start": args.start, "rows": rows}), indent=2) + "\n")


if __name__ == "__main__":
    main()
