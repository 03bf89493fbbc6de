"""The distillation job on a tiny random 4-layer teacher and a 2-layer student (tests/tiny_lm.py), with a
tiny movie KG in the real in-process retriever (MiniLM, Qdrant in memory) and a fake MetaQA directory."""

import builtins
import copy
import io
import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from distillation.__main__ import main
from distillation.config import DistillConfig, field_docs, load_config, save_config
from distillation.data import Example, path_retriever, read_examples, run_data
from distillation.evaluation import answer, run_evaluate, score
from distillation.losses import distillation_loss, divergence, forward_kl, generalized_jsd, rag_nll, reverse_kl
from distillation.pipeline import run, student_objective, teacher_objective, training_examples
from distillation.rag_batch import answer_ids, answer_logits, make_batch
from distillation.student_init import evenly_spaced, student_from_teacher
from distillation.templates import generic_templates, template_questions
from distillation.training import read_log, train
from generator_service.fact_scoring import FactScorer
from generator_service.lm_loading import load_causal_lm
from generator_service.rag import RagGenerator
from retriever_service.ingest import ingest_triples
from retriever_service.prior_fitting import fit_for_store
from retriever_service.readers import read_triples
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.facts import Triple
from shared.metrics import Metrics
from tiny_lm import tiny_lm

MOVIES = Path(__file__).parent / "fixtures" / "movies.txt"
DEV = [  # qtype, question, answers
    ("movie_to_director", "who directed [Forrest Gump]", "Robert Zemeckis"),
    ("actor_to_movie", "what movies did [Tom Hanks] act in", "Forrest Gump|Cast Away|Big"),
    ("movie_to_director", "[Big] was directed by who", "Penny Marshall"),
    ("movie_to_language", "what language is [Amélie] in", "French"),
    ("movie_to_year", "when was [Forrest Gump] released", "1994"),
    ("movie_to_director", "who directed [Forrest Gump]", "Robert Zemeckis"),  # a duplicate
]
TEST = [
    ("movie_to_director", "who is the director of [Up]", "Pete Docter"),
    ("director_to_movie", "what did [Spike Jonze] direct", "Her"),
]
DEV_2HOP = [
    ("actor_to_movie_to_director", "who directed the movies starred by [Tom Hanks]", "Robert Zemeckis|Penny Marshall"),
    ("director_to_movie_to_language", "what language are the films directed by [Jean-Pierre Jeunet] in", "French"),
]
TEST_2HOP = [
    (
        "actor_to_movie_to_director",
        "the films starred by [Tom Hanks] were directed by who",
        "Robert Zemeckis|Penny Marshall",
    )
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def metaqa_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("metaqa")
    for hops, split, rows in ((1, "dev", DEV), (1, "test", TEST), (2, "dev", DEV_2HOP), (2, "test", TEST_2HOP)):
        (root / f"{hops}-hop").mkdir(exist_ok=True)
        (root / f"{hops}-hop" / f"{split}.txt").write_text("".join(f"{q}\t{a}\n" for _, q, a in rows))
        (root / f"{hops}-hop" / f"qa_{split}_qtype.txt").write_text("".join(f"{t}\n" for t, _, _ in rows))
    return root


@pytest.fixture(scope="module")
def retriever(encoder, tmp_path_factory, metaqa_dir):
    """The path search over the movies KG, its chain prior fitted on the dev questions (as the service answers)."""
    state = RetrieverState(
        settings=RetrieverSettings(qdrant_url=":memory:", data_dir=tmp_path_factory.mktemp("r")),
        encoder=encoder,
        metrics=Metrics("test_distillation"),
    )
    ingest_triples(read_triples(MOVIES), encoder=encoder, store=state.store(), entities=state.entities)
    state.relations, _ = fit_for_store(
        state.path_search(), [metaqa_dir / "1-hop" / "dev.txt", metaqa_dir / "2-hop" / "dev.txt"], max_eval=30
    )
    yield path_retriever(state)
    state.close()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A random 4-layer Llama with the tiny tokenizer, saved as a model directory."""
    lm = tiny_lm()
    config = copy.deepcopy(lm.model.config)
    config.num_hidden_layers = 4
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base")
    LlamaForCausalLM(config).save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


def tiny_config(root: Path, metaqa_dir: Path, base: Path, *extra: str) -> DistillConfig:
    small = ["steps=6", "batch_size=3", "grad_accum=2", "lr=3e-3", "warmup_steps=1", "checkpoint_every=2"]
    return load_config(
        "cpu",
        None,
        [
            f"run_dir={root / 'run'}",
            f"teacher_base={base}",
            f"teacher_dir={root / 'models/teacher'}",
            f"student_dir={root / 'models/student'}",
            f"results_dir={root / 'results'}",
            f"lm_cache_dir={root / 'cache'}",
            "device=cpu",
            f"data.metaqa_dir={metaqa_dir}",
            f"data.kg_files={json.dumps([str(MOVIES)])}",
            "data.max_template_questions=30",
            "data.retriever_url=:memory:",
            "data.top_k=3",
            "data.hops=[1, 2]",
            "data.chain_questions=10",
            "eval.hops=[1, 2]",
            *[f"teacher.{s}" for s in small],
            *[f"student.train.{s}" for s in small],
            "student.num_layers=2",
            "eval.max_questions=null",
            "eval.max_dev_questions=null",
            "eval.latency_questions=4",
            "eval.batch_size=2",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def data_run(tmp_path_factory, metaqa_dir, tiny_base, retriever):
    """The data step once, with every file it opens recorded."""
    root = tmp_path_factory.mktemp("data")
    config = tiny_config(root, metaqa_dir, tiny_base)
    opened, real_open = [], builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", spy)
        patch.setattr(io, "open", spy)  # pathlib's Path.open and read_text
        manifest = run_data(config, retriever)
    return config, manifest, opened


@pytest.fixture(scope="module")
def examples(data_run) -> list[Example]:
    return read_examples(Path(data_run[0].run_dir) / "data" / "train.jsonl")


def test_config_defaults_profile_file_and_overrides(tmp_path):
    (tmp_path / "c.toml").write_text('seed = 3\n[student]\ndivergence = "reverse"\n[student.train]\nlr = 1\n')
    config = load_config(
        "gpu",
        tmp_path / "c.toml",
        ["student.train.lr=0.5", "eval.max_questions=10", 'eval.splits=["test"]', "data.kg_files=demo"],
    )
    assert (config.seed, config.student.divergence, config.student.train.lr) == (3, "reverse", 0.5)
    assert config.teacher.batch_size == 32 and config.eval.max_questions == 10 and config.eval.splits == ["test"]
    assert config.data.kg_files == ["demo"] and load_config().teacher.batch_size == 8
    for bad in (["nope=1"], ["teacher.nope=1"], ["teacher.steps=many"], ["student.divergence=l2"], ["teacher=1"]):
        with pytest.raises(ValueError):
            load_config("cpu", None, bad)
    assert all(doc for _, _, doc in field_docs())  # every field documented
    assert main(["data", "--set", "nope=1"]) == 2


def test_config_enumerations_ranges_help_and_saved_files(tmp_path, capsys):
    for bad in (
        ["student.jsd_beta=1"],
        ["student.alpha=1.5"],
        ['eval.splits=["train"]'],
        ["eval.mode=beam"],
        ['eval.measure=["speed"]'],
        ["teacher.steps=0"],
        ["eval.dtype=float16"],
        ["torch_threads=0"],
    ):
        with pytest.raises(ValueError):
            load_config("cpu", None, bad)
    config = load_config("gpu", None, ["student.train.lr=0.5", "teacher.bf16=true", "data.mix_with=a.jsonl"])
    assert (config.teacher.bf16, config.student.train.bf16, config.data.mix_with) == (True, None, ["a.jsonl"])
    assert config.student.train.steps == 5000 and DistillConfig().student.train.steps == 250  # its own defaults
    saved = save_config(config, tmp_path / "saved.json")
    assert load_config("cpu", saved) == config  # a saved config is a config file
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for key, _default, doc in field_docs():
        assert f"  {key}  " in listed and doc.split()[0] in listed, key
    saved_keys = {f"{section}.{key}" if section else key for section, key in _leaves(json.loads(saved.read_text()))}
    listed_keys = [key for key, _, _ in field_docs()]
    assert set(listed_keys) == saved_keys and len(listed_keys) == len(saved_keys)  # every field of a config
    assert ("student.train.bf16", None) in [(key, default) for key, default, _ in field_docs()]  # auto


def _leaves(tree: dict, section: str = "") -> list[tuple[str, str]]:
    """(section, key) of every leaf of a nested dict."""
    return [
        pair
        for key, value in tree.items()
        for pair in (_leaves(value, f"{section}.{key}".lstrip(".")) if isinstance(value, dict) else [(section, key)])
    ]


def test_score_counts_hits_after_folding_and_exact_matches_as_written():
    examples = [
        Example("who directed Forrest Gump", ["Robert Zemeckis"], "movie_to_director", "test"),
        Example("what did Tom Hanks act in", ["Big", "Cast Away"], "actor_to_movie", "test"),
        Example("what did Spike Jonze act in", ["Her"], "actor_to_movie", "test"),
    ]
    scored = score(examples, ["robert zemeckis", "Cast Away ", "Up"])
    assert scored == {
        "questions": 3,
        "hits@1": 2 / 3,
        "exact_match": 1 / 3,
        "by_qtype": {
            "actor_to_movie": {"questions": 2, "hits@1": 1 / 2, "exact_match": 1 / 2},
            "movie_to_director": {"questions": 1, "hits@1": 1.0, "exact_match": 0.0},
        },
    }


def test_templates_both_directions_and_generic_fallback():
    triples = [
        Triple("Up", "directed_by", "Pete Docter"),
        Triple("France", "capital", "Paris"),
        Triple("France", "also known as", "French Republic"),
    ]
    questions = template_questions(triples, limit=100, phrasings=2, max_answers=5, rng=random.Random(0))
    by_type = {q.qtype: q for q in questions}
    assert set(by_type) == {"movie_to_director", "director_to_movie", "capital (forward)", "capital (inverse)"}
    assert by_type["director_to_movie"].answers == ("Up",) and "Pete Docter" in by_type["director_to_movie"].text
    assert len([q for q in questions if q.qtype == "movie_to_director"]) == 2  # two phrasings
    assert "What is the capital of {e}?" in generic_templates("capital").forward
    assert "What has capital {e}?" in generic_templates("capital").inverse
    assert not any("French Republic" in q.text or "French Republic" in q.answers for q in questions)  # aliases


def test_data_step_retrieves_once_and_never_reads_test(data_run, examples):
    config, manifest, opened = data_run
    assert (Path(config.data.metaqa_dir) / "1-hop" / "test.txt").is_file()  # there, and never opened
    assert any(p.endswith("dev.txt") for p in opened) and any(p.endswith("movies.txt") for p in opened)
    assert not any("test" in Path(p).name for p in manifest["sources"] + opened)
    assert any(p.endswith("1-hop/dev.txt") for p in manifest["sources"]) and str(MOVIES) in manifest["sources"]
    questions = [e.question for e in examples]
    assert len(questions) == len(set(questions)) and "who directed Forrest Gump" in questions  # deduplicated
    by_source = manifest["counts"]["by_source"]
    assert by_source["template"] > 0 and by_source["metaqa/1-hop/dev"] == 5 and by_source["metaqa/2-hop/dev"] == 2
    assert any(p.endswith("2-hop/dev.txt") for p in manifest["sources"])
    for example in examples:
        assert 1 <= len(example.documents) <= 3
        assert math.isclose(sum(d["prior"] for d in example.documents), 1, rel_tol=1e-5)
        assert example.target in {d["end"] for d in example.documents} and example.target in example.answers
    chained = next(e for e in examples if e.question == "who directed the movies starred by Tom Hanks")
    assert chained.target in {"Robert Zemeckis", "Penny Marshall"} and chained.linked == ["Tom Hanks"]
    assert any(d["chain"] == "starred_actors^-1/directed_by" for d in chained.documents)
    dev = next(e for e in examples if e.question == "who directed Forrest Gump")
    assert dev.target == "Robert Zemeckis" and dev.linked == ["Forrest Gump"]


def test_training_forward_scores_like_the_generator(examples):
    lm = tiny_lm()
    scorer = FactScorer(lm.model, lm.tokenizer)
    by_facts = sorted(examples, key=lambda e: len(e.documents))
    picked = [by_facts[-1], by_facts[0], by_facts[-2]]  # 3, 1 and 3 facts: padded fact slots
    batch = make_batch(scorer, picked, torch.device("cpu"))
    assert batch.fact_mask.sum(1).tolist() == [len(e.documents) for e in picked] and not batch.fact_mask.all()
    logprobs = answer_logits(lm.model, batch).log_softmax(-1)  # (B, K, T, V)
    for b, example in enumerate(picked):
        ids = answer_ids(scorer, example.target)
        reference = scorer.score_answers(example.question, example.texts, [ids]).token_logprobs[:, 0]  # (K, T)
        k = len(example.documents)
        mine = logprobs[b, :k, : len(ids)].gather(-1, torch.tensor(ids).expand(k, -1)[..., None])[..., 0]  # (K, T)
        torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-5)


def test_divergences():
    torch.manual_seed(0)
    teacher, student = torch.randn(2, 3, 4, 11).log_softmax(-1), torch.randn(2, 3, 4, 11).log_softmax(-1)
    mask = torch.rand(2, 3, 4) > 0.3
    for name in ("forward", "reverse", "jsd"):
        assert divergence(name, teacher, teacher, mask).abs().max() < 1e-6  # zero when student == teacher
        value = divergence(name, teacher, student, mask)  # (2, 3, 4)
        assert (value[mask] > 0).all() and (value[~mask] == 0).all()
        changed = student.clone()
        changed[~mask] = torch.tensor([math.inf, -math.inf, math.nan] + [0.0] * 8)
        assert torch.equal(divergence(name, teacher, changed, mask), value)  # masked positions do not count
        changed.requires_grad_(True)
        divergence(name, teacher, changed, mask).sum().backward()
        assert changed.grad.isfinite().all() and (changed.grad[~mask] == 0).all()  # nor does their gradient
    for beta in (0.1, 0.5, 0.9):
        jsd = generalized_jsd(teacher, student, mask, beta)
        entropy = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta))
        assert (jsd >= 0).all() and (jsd <= entropy + 1e-6).all() and entropy <= math.log(2)
        torch.testing.assert_close(jsd, generalized_jsd(student, teacher, mask, 1 - beta))
    far = torch.tensor([[0.0, -50.0], [-50.0, 0.0]]).log_softmax(-1)  # disjoint supports: JSD(0.5) -> log 2
    assert abs(float(generalized_jsd(far[:1], far[1:], torch.ones(1, dtype=torch.bool), 0.5)) - math.log(2)) < 1e-4
    assert torch.equal(forward_kl(teacher, student, mask), reverse_kl(student, teacher, mask))


def test_distillation_loss_parts():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 11)  # (B, K, T, V)
    targets = torch.randint(0, 11, (2, 4))
    target_mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    fact_mask = torch.tensor([[True, True, True], [True, True, False]])
    log_priors = torch.tensor([[-0.5, -1.5, -2.0], [-0.3, -1.4, -math.inf]])
    same = distillation_loss(logits, logits, targets, target_mask, log_priors, fact_mask, alpha=0.5, temperature=2.0)
    assert float(same["per_fact"]) < 1e-6 and float(same["marginal"]) < 1e-6
    torch.testing.assert_close(same["loss"], 0.5 * same["nll"])
    per_doc = logits.log_softmax(-1).gather(-1, targets[:, None, :, None].expand(-1, 3, -1, -1))[..., 0]  # (B, K, T)
    brute = [
        -torch.log(sum(log_priors[b, k].exp() * per_doc[b, k][target_mask[b]].sum().exp() for k in range(3)))
        for b in range(2)
    ]
    torch.testing.assert_close(rag_nll(per_doc, target_mask, log_priors), torch.stack(brute))
    for name in ("forward", "reverse", "jsd"):
        kwargs = dict(alpha=0.7, temperature=1.5, divergence_name=name)
        noisy = logits + 0.3 * torch.randn_like(logits)
        a = distillation_loss(logits, noisy, targets, target_mask, log_priors, fact_mask, **kwargs)
        noisy[:, :, 3], noisy[1, 2] = 100.0, -7.0  # a masked step of every row; the missing fact of question 1
        b = distillation_loss(logits, noisy, targets, target_mask, log_priors, fact_mask, **kwargs)
        assert all(torch.equal(a[k], b[k]) for k in a) and float(a["per_fact"]) > 0 and float(a["marginal"]) > 0


def test_student_copies_evenly_spaced_teacher_layers(tiny_base):
    assert evenly_spaced(30, 6) == [0, 6, 12, 17, 23, 29] and evenly_spaced(4, 2) == [0, 3]
    teacher = load_causal_lm(tiny_base, cache_dir=tiny_base, dtype="float32", device="cpu").model
    student, picked = student_from_teacher(teacher, 2)
    assert picked == [0, 3] and student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    for i, j in enumerate(picked):
        pairs = zip(student.model.layers[i].named_parameters(), teacher.model.layers[j].named_parameters(), strict=True)
        for (name, p), (_, q) in pairs:
            assert torch.equal(p, q), name
    for part in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(student.get_parameter(part), teacher.get_parameter(part))


def test_teacher_loss_falls(data_run, examples, tiny_base, tmp_path):
    config = tiny_config(tmp_path, data_run[0].data.metaqa_dir, tiny_base, "teacher.steps=16", "teacher.lr=1e-2")
    lm = load_causal_lm(tiny_base, cache_dir=tmp_path, dtype="float32", device="cpu")
    report = train(
        lm.model,
        teacher_objective(FactScorer(lm.model, lm.tokenizer)),
        examples,
        config.teacher,
        out_dir=tmp_path / "teacher",
        config=config,
        desc="teacher",
    )
    losses = [row["loss"] for row in read_log(tmp_path / "teacher" / "log.jsonl")]
    assert len(losses) == 16 and sum(losses[-4:]) < 0.5 * sum(losses[:4]) and report.final_loss < report.first_loss


def test_killed_run_resumes_to_the_same_weights(data_run, examples, tiny_base, tmp_path):
    config = tiny_config(tmp_path, data_run[0].data.metaqa_dir, tiny_base, "teacher.steps=5")

    def fresh():
        lm = load_causal_lm(tiny_base, cache_dir=tmp_path, dtype="float32", device="cpu")
        return lm.model, teacher_objective(FactScorer(lm.model, lm.tokenizer))

    whole, whole_loss = fresh()
    train(whole, whole_loss, examples, config.teacher, out_dir=tmp_path / "whole", config=config, desc="whole")
    killed, killed_loss = fresh()
    calls = []

    def dies_in_step_4(batch):
        calls.append(1)
        if len(calls) == 7:  # micro-batch 1 of step 4; the newest checkpoint is step 2
            raise KeyboardInterrupt
        return killed_loss(batch)

    with pytest.raises(KeyboardInterrupt):
        train(killed, dies_in_step_4, examples, config.teacher, out_dir=tmp_path / "resumed", config=config, desc="x")
    assert [p.name for p in sorted((tmp_path / "resumed" / "checkpoints").glob("step-*"))] == ["step-000002"]
    resumed, resumed_loss = fresh()
    report = train(
        resumed, resumed_loss, examples, config.teacher, out_dir=tmp_path / "resumed", config=config, desc="resumed"
    )
    assert report.resumed_from == 2
    for (name, p), (_, q) in zip(whole.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert [r["loss"] for r in read_log(tmp_path / "whole" / "log.jsonl")] == [
        r["loss"] for r in read_log(tmp_path / "resumed" / "log.jsonl")
    ]


def test_student_objective_uses_the_frozen_teacher(data_run, examples, tiny_base, tmp_path):
    config = tiny_config(tmp_path, data_run[0].data.metaqa_dir, tiny_base)
    teacher = load_causal_lm(tiny_base, cache_dir=tmp_path, dtype="float32", device="cpu")
    teacher.model.requires_grad_(False)
    student, _ = student_from_teacher(teacher.model, 4)  # all layers: a copy of the teacher
    objective = student_objective(FactScorer(teacher.model, teacher.tokenizer), student, config.student)
    loss, tokens, parts = objective(examples[:4])
    assert parts["per_fact"] < 1e-6 and parts["marginal"] < 1e-6 and tokens > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.model.parameters())


def test_all_steps_end_to_end(tmp_path, metaqa_dir, tiny_base, retriever):
    config = tiny_config(tmp_path, metaqa_dir, tiny_base)
    run("all", config, retriever)
    for name, layers in (("teacher", 4), ("student", 2)):
        directory = tmp_path / "models" / name
        lm = load_causal_lm(directory, cache_dir=tmp_path / "cache", device="cpu")
        assert lm.model.config.num_hidden_layers == layers and len(lm.tokenizer) == len(tiny_lm().tokenizer)
        for file in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"):
            assert (directory / file).is_file(), file
        saved = json.loads((directory / "distillation_config.json").read_text())
        assert saved["student"]["num_layers"] == 2 and saved["run_dir"] == config.run_dir
        assert "## Evaluation" in (card := (directory / "README.md").read_text()) and "| test | 1 | 2 |" in card
        checkpoints = sorted((Path(config.run_dir) / name / "checkpoints").glob("step-*"))
        assert [c.name for c in checkpoints] == ["step-000004", "step-000006"]
        assert all((c / "distillation_config.json").is_file() for c in checkpoints)
    result = json.loads((tmp_path / "results" / "distillation.json").read_text())
    assert {(r["model"], r["split"], r["hops"]) for r in result["rows"]} == {
        (m, s, h) for m in ("base", "teacher", "student") for s in ("test", "dev") for h in (1, 2)
    }
    sources = {"base": tiny_base, "teacher": tmp_path / "models/teacher", "student": tmp_path / "models/student"}
    generators = {
        name: RagGenerator(
            load_causal_lm(source, cache_dir=tmp_path / "cache", dtype=config.eval.dtype, device=config.device)
        )
        for name, source in sources.items()
    }
    for row in result["rows"]:  # each row's figures: its model's answers to its split's stored questions, scored
        examples = read_examples(Path(config.run_dir) / "eval" / f"{row['split']}-{row['hops']}hop.jsonl")
        predictions, _ = answer(generators[row["model"]], examples, config.eval)
        assert {key: row[key] for key in ("questions", "hits@1", "exact_match", "by_qtype")} == score(
            examples, predictions
        )
    latency = {name: timing["ms_per_answer"] for name, timing in result["latency"].items()}
    by_hops = {name: timing["by_hops"] for name, timing in result["latency"].items()}
    assert all(
        r["latency_ms_per_answer"] == by_hops[r["model"]][str(r["hops"])] > 0
        for r in result["rows"]
        if r["split"] == "test"
    )
    assert all(latency[name] > 0 for name in latency)
    assert {r["split"] for r in result["rows"] if "latency_ms_per_answer" in r} == {"test"}  # dev is not timed
    assert len({timing["run"] for timing in result["latency"].values()}) == 1
    assert result["student_speedup"] == round(latency["teacher"] / latency["student"], 2)
    assert result["ceilings"]["test/1-hop"]["graph_answerable"] == "2 of 2"
    assert (tmp_path / "results" / "distillation.png").stat().st_size > 0
    assert (Path(config.run_dir) / "eval" / "metrics.json").is_file()
    examples, _ = training_examples(config, FactScorer(None, lm.tokenizer), 24)
    assert examples and all(e.source in ("template", "chain", "metaqa/1-hop/dev", "metaqa/2-hop/dev") for e in examples)
    further = tiny_config(
        tmp_path,
        metaqa_dir,
        tiny_base,
        f"student.init_from={tmp_path / 'models/student'}",
        f"student_dir={tmp_path / 'models/further'}",
        "student.train.resume=false",
        "student.num_layers=1",
    )  # ignored: the starting student has 2 layers
    run("student", further, retriever)
    lm = load_causal_lm(tmp_path / "models/further", cache_dir=tmp_path / "cache", device="cpu")
    assert lm.model.config.num_hidden_layers == 2
    assert (
        f"initialised from the student `{tmp_path / 'models/student'}`"
        in (tmp_path / "models/further/README.md").read_text()
    )
    again = tiny_config(
        tmp_path, metaqa_dir, tiny_base, 'eval.models=["student"]', 'eval.measure=["accuracy"]', 'eval.splits=["test"]'
    )
    merged = run_evaluate(again, retriever)  # one model's accuracy again: the other rows and timings are kept
    assert [(r["model"], r["split"], r["hops"]) for r in merged["rows"]] == [
        (r["model"], r["split"], r["hops"]) for r in result["rows"]
    ]
    assert merged["latency"] == result["latency"] and merged["student_speedup"] == result["student_speedup"]
