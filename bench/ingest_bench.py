"""Ingest benchmark on synthetic DBpedia-shaped N-Triples (.nt.bz2): how fast the reader turns a
compressed dump into facts, and how fast a full load (MiniLM embedding, Qdrant Edge) stores them.

    python -m bench.ingest_bench [--triples 1000000] [--ingest-triples 20000] [--load-dump | --only-load-dump]

Each phase runs in a subprocess of its own so that its peak RSS is its own:
- `decompress`: the .bz2 read line by line, nothing parsed (the floor under any reader);
- `read` (labels prepass, the default) and `read-stream`: KgReader over the whole dump, the
  triples counted and dropped (what `kgrag-ingest stats FILE` does);
- `ingest` and `ingest-no-text`: `kgrag-ingest load` of a smaller dump (--ingest-triples statements)
  into a fresh store, long text as passages and left out (the default);
- `encode`: MiniLM alone on 4096 of those facts, the encoder's share of a load;
- with --load-dump, `load_dump`: the whole dump loaded, long text left out (the figure at scale; about
  a third of the statements become facts); --only-load-dump runs that phase alone and keeps the
  other phases of the results file.
The 1, 5, 15 minute load averages before and after each phase are recorded: the machine is shared.
Prints a table and writes bench/results/ingest.json (commit, date, machine, numbers).
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.provenance import stamp

RESULTS = Path("bench/results")
DATA = Path("var/bench")
DBR, DBO, DBP = "http://dbpedia.org/resource/", "http://dbpedia.org/ontology/", "http://dbpedia.org/property/"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
_WORDS = (
    "alpha beta gamma delta river mountain city company museum school prize engine theory novel "
    "harbour valley bridge garden festival orchestra league station island forest"
).split()


def _name(rng: random.Random, words: int = 2) -> str:
    return "_".join(rng.choice(_WORDS).capitalize() for _ in range(words))


def _abstract(rng: random.Random, name: str, sentences: int) -> str:
    body = [
        f"{name.replace('_', ' ')} is a {rng.choice(_WORDS)} known for the {rng.choice(_WORDS)} of "
        f"{rng.choice(_WORDS)} and {rng.choice(_WORDS)}."
    ]
    body += [
        f"In {rng.randint(1800, 2020)} it was linked to the {rng.choice(_WORDS)} {rng.choice(_WORDS)} near the "
        f"{rng.choice(_WORDS)} of {_name(rng).replace('_', ' ')}."
        for _ in range(sentences - 1)
    ]
    return " ".join(body)


def entity_lines(i: int, rng: random.Random) -> list[str]:
    """The description of entity i as DBpedia's dumps give it (about 40 lines): labels in several
    languages, types, typed literals and their dbp: duplicates, an empty literal, an intermediate
    node, abstracts, layout properties, sameAs, categories, and a redirect to it."""
    name = f"{_name(rng)}_{i}"
    e, node, city, other = (
        f"<{DBR}{name}>",
        f"<{DBR}{name}__PersonFunction__1>",
        f"<{DBR}City_{i % 997}>",
        f"<{DBR}{_name(rng)}_{rng.randrange(max(i, 1))}>",
    )
    date = f'"{rng.randint(1850, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"^^<{XSD}date>'
    title = name.replace("_", " ")
    rows = [
        (e, RDFS_LABEL, f'"{title}"@en'),
        (e, RDFS_LABEL, f'"{title}"@de'),
        (e, RDFS_LABEL, f'"{title} (fr)"@fr'),
        (e, RDFS_LABEL, f'"エンティティ{i}"@ja'),
        (e, TYPE, f"<{DBO}Person>"),
        (e, TYPE, "<http://www.w3.org/2002/07/owl#Thing>"),
        (e, TYPE, "<http://www.wikidata.org/entity/Q5>"),
        (e, f"{DBO}birthDate", date),
        (e, f"{DBP}birthDate", date),
        (e, f"{DBO}birthYear", f'"{date[1:5]}"^^<{XSD}gYear>'),
        (e, f"{DBO}birthPlace", city),
        (e, f"{DBP}birthPlace", city),
        (e, f"{DBP}spouse", '""@en'),
        (e, f"{DBO}spouse", other),
        (e, f"{DBO}occupation", node),
        (e, f"{DBP}occupation", f'"{rng.choice(_WORDS).capitalize()}"@en'),
        (e, f"{DBO}abstract", f'"{_abstract(rng, name, 6)}"@en'),
        (e, f"{DBO}abstract", f'"{_abstract(rng, name, 3)}"@de'),
        (e, "http://www.w3.org/2000/01/rdf-schema#comment", f'"{_abstract(rng, name, 2)}"@en'),
        (e, f"{DBP}image", f'"{name}.jpg"@en'),
        (e, f"{DBP}caption", f'"{title} in {rng.randint(1900, 2020)}"@en'),
        (e, f"{DBP}width", f'"{rng.randint(100, 300)}"^^<{XSD}integer>'),
        (e, "http://xmlns.com/foaf/0.1/depiction", f"<http://commons.wikimedia.org/wiki/Special:FilePath/{name}.jpg>"),
        (e, f"{DBO}thumbnail", f"<http://commons.wikimedia.org/wiki/Special:FilePath/{name}.jpg?width=300>"),
        (e, f"{DBO}wikiPageID", f'"{i}"^^<{XSD}integer>'),
        (e, f"{DBO}wikiPageRevisionID", f'"{i * 7}"^^<{XSD}integer>'),
        (e, f"{DBO}wikiPageLength", f'"{rng.randint(1000, 90000)}"^^<{XSD}nonNegativeInteger>'),
        (e, "http://www.w3.org/ns/prov#wasDerivedFrom", f"<http://en.wikipedia.org/wiki/{name}?oldid={i}&ns=0>"),
        (e, f"{DBO}wikiPageWikiLink", other),
        (e, f"{DBO}wikiPageWikiLink", city),
        (e, "http://www.w3.org/2002/07/owl#sameAs", f"<http://www.wikidata.org/entity/Q{i + 100}>"),
        (e, "http://www.w3.org/2002/07/owl#sameAs", f"<http://fr.dbpedia.org/resource/{name}>"),
        (e, "http://purl.org/dc/terms/subject", f"<{DBR}Category:{_name(rng)}_people>"),
        (e, "http://purl.org/dc/terms/subject", f"<{DBR}Category:People_from_City_{i % 997}>"),
        (e, f"{DBO}numberOfEmployees", f'"{rng.randint(1, 200000)}"^^<{XSD}nonNegativeInteger>'),
        (e, f"{DBO}height", f'"{rng.uniform(1.5, 2.1):.2f}E0"^^<{XSD}double>'),
        (e, f"{DBO}networth", f'"{rng.randint(1, 900)}.5E8"^^<http://dbpedia.org/datatype/usDollar>'),
        (node, TYPE, f"<{DBO}PersonFunction>"),
        (node, f"{DBO}title", f'"{rng.choice(_WORDS).capitalize()}"@en'),
        (f"<{DBR}Redirect_{name}>", RDFS_LABEL, f'"Redirect {title}"@en'),
        (f"<{DBR}Redirect_{name}>", f"{DBO}wikiPageRedirects", e),
    ]
    sep = "\t" if i % 5 == 0 else " "
    lines = [sep.join(t if t.startswith(("<", '"')) else f"<{t}>" for t in row) + " ." for row in rows]
    return ([f"# entity {i}"] if i % 10 == 0 else []) + lines + ([""] if i % 7 == 0 else [])


def synthetic_lines(n_triples: int, seed: int = 0) -> Iterator[str]:
    """Lines of a DBpedia-shaped dump holding n_triples statements (comments and blank lines besides)."""
    rng = random.Random(seed)
    written, i = 0, 0
    while written < n_triples:
        for line in entity_lines(i, rng):
            if written >= n_triples:
                return
            written += bool(line) and not line.startswith("#")
            yield line
        i += 1


def write_dump(path: Path, n_triples: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "wt", encoding="utf-8") as out:
        for line in synthetic_lines(n_triples, seed):
            out.write(line + "\n")
    return path


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def phase_decompress(path: Path) -> dict:
    start, lines = time.perf_counter(), 0
    with bz2.open(path, "rb") as fh:
        for _ in fh:
            lines += 1
    seconds = time.perf_counter() - start
    return {
        "lines": lines,
        "seconds": round(seconds, 2),
        "lines_per_s": round(lines / seconds),
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_read(path: Path, labels: str) -> dict:
    from retriever_service.rdf_rules import dbpedia_rules
    from retriever_service.readers import KgReader, ReadReport

    rss_before = _peak_rss_mb()
    report = ReadReport()
    reader = KgReader([path], rules=dbpedia_rules(labels=labels), report=report)
    start = time.perf_counter()
    reader.prepare()
    prepass = time.perf_counter() - start
    triples = sum(1 for _ in reader)
    seconds = time.perf_counter() - start
    return {
        "labels": labels,
        "statements": report.statements,
        "triples": triples,
        "seconds": round(seconds, 1),
        "prepass_seconds": round(prepass, 1),
        "statements_per_s": round(report.statements / seconds),
        "triples_per_s": round(triples / seconds),
        "names_indexed": len(reader.names),
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_imports_mb": rss_before,
        "dropped": dict(report.dropped.most_common()),
        "passages": report.passages,
        "aliases": report.aliases,
    }


def phase_ingest(path: Path, long_text: str = "passages") -> dict:
    """`kgrag-ingest load` into a fresh store, as a child process (its peak RSS is the child's); and what
    the facts were (text passages are longer to embed than the short facts)."""
    from retriever_service.rdf_rules import dbpedia_rules
    from retriever_service.readers import read_triples
    from shared.facts import TEXT

    triples = list(read_triples(path, rules=dbpedia_rules(long_text=long_text)))
    with tempfile.TemporaryDirectory() as data_dir:
        start = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "retriever_service.ingest_cli",
                "--data-dir",
                data_dir,
                "load",
                str(path),
                "--long-text",
                long_text,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    report = json.loads(out.stdout)
    return {
        "long_text": long_text,
        "statements": report["statements"],
        "facts": report["added"],
        "passages": sum(t.object_kind == TEXT for t in triples),
        "mean_fact_chars": round(sum(len(t.text) for t in triples) / max(len(triples), 1), 1),
        "seconds_with_model_load": round(seconds, 1),
        "ingest_seconds": report["seconds"],
        "facts_per_s": report["facts_per_s"],
        "statements_per_s": round(report["statements"] / report["seconds"]),
        "optimize_seconds": report["optimize_seconds"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def phase_encode(path: Path, limit: int = 4096) -> dict:
    """MiniLM alone on the sample's fact sentences (long text left out), as a load batches them: what the
    encoder costs of a load, measured beside it."""
    from retriever_service.encoder import Encoder
    from retriever_service.readers import read_triples

    texts = [t.text for t, _ in zip(read_triples(path), range(limit), strict=False)]
    encoder = Encoder.load()
    encoder.encode(texts[:256])  # warm-up
    start = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - start
    return {
        "facts": len(texts),
        "seconds": round(seconds, 1),
        "facts_per_s": round(len(texts) / seconds),
        "mean_fact_chars": round(sum(map(len, texts)) / len(texts), 1),
        "bf16": encoder.bf16,
        "torch_threads": __import__("torch").get_num_threads(),
        "peak_rss_mb": _peak_rss_mb(),
    }


PHASES = {
    "decompress": phase_decompress,
    "encode": phase_encode,
    "read": lambda p: phase_read(p, "prepass"),
    "read-stream": lambda p: phase_read(p, "stream"),
    "ingest": phase_ingest,
    "ingest-no-text": lambda p: phase_ingest(p, "drop"),
}


def run_phase(phase: str, path: Path) -> dict:
    """One phase in a fresh interpreter, so that peak RSS is that phase's alone."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "bench.ingest_bench", "--phase", phase, "--file", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: on a shared machine, what else was running."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    mem = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {"cores": os.cpu_count(), "memory_gb": round(mem / 2**20, 1), "python": sys.version.split()[0]}


def print_table(result: dict) -> None:
    print(f"\n{'phase':<36}{'input':>12}{'out':>10}{'s':>8}{'in/s':>10}{'out/s':>9}{'peak RSS MB':>13}{'load':>7}")
    for key, label, unit_in, unit_out in (
        ("decompress", "bz2 lines, nothing parsed", "lines", None),
        ("read", "reader, names prepass (default)", "statements", "triples"),
        ("read_stream", "reader, labels streamed", "statements", "triples"),
        ("ingest", "full load, passages (MiniLM, Edge)", "statements", "facts"),
        ("ingest_no_text", "full load, long text left out", "statements", "facts"),
        ("encode", "MiniLM alone on those facts", "facts", "facts"),
        ("load_dump", "full load of the dump, no long text", "statements", "facts"),
    ):
        r = result.get(key)
        if not r:
            continue
        seconds = r.get("seconds", r.get("ingest_seconds"))
        n_in, n_out = r[unit_in], r.get(unit_out) if unit_out else None
        print(
            f"{label:<36}{n_in:>12,}{(n_out or 0):>10,}{seconds:>8}{round(n_in / seconds):>10,}"
            f"{(round(n_out / seconds) if n_out else 0):>9,}{r.get('peak_rss_mb', 0):>13}"
            f"{r.get('load_average_before', [0])[0]:>7}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triples", type=int, default=1_000_000, help="statements in the dump the reader reads")
    p.add_argument("--ingest-triples", type=int, default=20_000, help="statements in the sample fully loaded")
    p.add_argument(
        "--load-dump", action="store_true", help="also load the whole dump (long text left out): the figure at scale"
    )
    p.add_argument("--only-load-dump", action="store_true", help="load the whole dump, keep the file's other phases")
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    p.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(PHASES[args.phase](args.file)))
        return 0
    big = DATA / f"dbpedia_like_{args.triples}.nt.bz2"
    small = DATA / f"dbpedia_like_{args.ingest_triples}.nt.bz2"
    for path, n in ((big, args.triples), (small, args.ingest_triples)):
        if not path.exists():
            print(f"writing {path} ({n:,} statements)", file=sys.stderr)
            write_dump(path, n)
    previous = RESULTS / "ingest.json"
    result = json.loads(previous.read_text()) if args.only_load_dump and previous.exists() else {}
    result.update(
        dump={"path": str(big), "statements": args.triples, "bytes": big.stat().st_size},
        sample={"path": str(small), "statements": args.ingest_triples, "bytes": small.stat().st_size},
        machine=machine(),
    )
    phases = (
        []
        if args.only_load_dump
        else [
            ("decompress", "decompress", big),
            ("read", "read", big),
            ("read_stream", "read-stream", big),
            ("ingest", "ingest", small),
            ("ingest_no_text", "ingest-no-text", small),
            ("encode", "encode", small),
        ]
    )
    load_dump = args.load_dump or args.only_load_dump
    if load_dump:
        phases.append(("load_dump", "ingest-no-text", big))
    for key, phase, path in phases:
        print(f"phase {phase} on {path.name} ...", file=sys.stderr)
        before = load_average()
        result[key] = {**run_phase(phase, path), "load_average_before": before, "load_average_after": load_average()}
    stamp(result, parts=["load_dump"] if load_dump else [])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
