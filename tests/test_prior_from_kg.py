"""A chain prior for a KG without training questions (issue 14): fitted on a slice of the demo KG from the
questions it generates about itself (`fit_for_store(search, [], from_kg=True)`), it ranks the relation a
hand-written question asks about first, puts a relation the KG lacks on `<none>` (or the reply abstains), and
keeps its thresholds through save and load; given other words for its relations, it reads questions in those
words as those relations. The fitting grids are cut to one point, the generated questions to five per chain and
the held-out evaluation to 30 questions: about a minute a fit on the 2 shared cores (two fits)."""

import functools

import numpy as np
import pytest

from retriever_service import prior_fitting
from retriever_service.chains import NONE_KEY, parse_chain
from retriever_service.demo_kg import demo_triples
from retriever_service.entity_linking import EntityIndex, mask_mention
from retriever_service.ingest import ingest_triples
from retriever_service.path_replies import search_replies
from retriever_service.path_search import PathLimits, PathSearch
from retriever_service.relation_prior import RelationPrior
from retriever_service.relation_words import relation_words
from retriever_service.settings import RetrieverSettings
from retriever_service.store import open_store
from shared.retriever_api import PathOptions

COUNTRIES = {
    "Argentina",
    "Australia",
    "Brazil",
    "Canada",
    "Chile",
    "Egypt",
    "France",
    "Germany",
    "Ghana",
    "India",
    "Italy",
    "Japan",
    "Kenya",
    "Mexico",
    "Mongolia",
    "Morocco",
    "Nigeria",
    "Norway",
    "Peru",
    "Poland",
    "Portugal",
    "Spain",
    "Switzerland",
    "Thailand",
    "Vietnam",
}

# Written by hand, in phrasings the generator does not use ("what is the X of Y", "the one whose X is Y", ...);
# none of them is among the held-out questions of bench/data/demo_questions.jsonl. "First" is the path search's
# top grounded chain: the prior's own first key is `<none>` for most of them (it learnt relation words other
# than the relations' labels as "not in the graph"). The border and demonym questions were expected failures
# (the border one was misread: a two-step chain won) until the generated questions named the kind of their
# answers (`type_nouns.py`).
ONE_HOP = [
    ("Which city is Japan's government seated in?", {"capital"}),
    ("Which country has its capital in Nairobi?", {"capital^-1"}),
    ("What do they pay with in Thailand?", {"currency"}),
    ("Which country uses the zloty?", {"currency^-1"}),
    ("Which countries share a border with Poland?", {"borders", "borders^-1"}),
    ("What are people from Mexico called?", {"demonym"}),
    ("How many people live in Egypt?", {"population"}),
    ("What languages are official in India?", {"official language"}),
    ("Which phone prefix do you dial for Norway?", {"calling code"}),
    ("Which continent is Ghana on?", {"region"}),
    ("Which time zone does Japan use?", {"time zone"}),
    ("What web address ending do sites from Peru have?", {"top-level domain"}),
]
ABSENT = ["Who is the current president of Brazil?", "Which song is the national anthem of Italy?"]


PER_CHAIN = 5  # generated questions per chain (the fit's default is 25)
# Words the encoder does not tie to the relations' labels, given as the relations' other words
WORDS = {"borders": ["marches"], "calling code": ["trunk prefix"]}
# Asked in those words: without them, read as other relations (demonym, ISO code)
IN_OTHER_WORDS = [("What are the marches of Peru?", "borders"), ("What is Norway's trunk prefix?", "calling code")]


@pytest.fixture(scope="module")
def fitted(encoder, tmp_path_factory):
    """(PathSearch over the slice with its fitted prior, the fit's report)."""
    yield from _fitted(encoder, tmp_path_factory, None)


@pytest.fixture(scope="module")
def fitted_with_words(encoder, tmp_path_factory):
    """The same, fitted with the relations' other words in WORDS."""
    yield from _fitted(encoder, tmp_path_factory, relation_words((r, w) for r, ws in WORDS.items() for w in ws))


def _fitted(encoder, tmp_path_factory, words):
    triples = [t for t in demo_triples() if t.subject in COUNTRIES]
    store = open_store(url=None, api_key=None, path=tmp_path_factory.mktemp("demo"), collection="demo", dim=encoder.dim)
    entities = EntityIndex()
    ingest_triples(triples, encoder=encoder, store=store, entities=entities, progress=False)
    store.optimize()
    search = PathSearch(encoder, store, entities, RelationPrior.uniform(entities.relations, encoder.dim), tau=0.05)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prior_fitting, "WEIGHTS", (0.3,))
        mp.setattr(prior_fitting, "TEMPERATURES", (0.5,))
        mp.setattr(prior_fitting, "MENTION_PENALTIES", (0.0,))
        mp.setattr(
            prior_fitting,
            "generated_training_questions",
            functools.partial(prior_fitting.generated_training_questions, per_chain=PER_CHAIN),
        )
        prior, report = prior_fitting.fit_for_store(search, [], from_kg=True, max_eval=30, words=words)
    assert search.prior is prior
    yield search, report
    store.close()


def reading(search: PathSearch, question: str) -> np.ndarray:
    """log p(chain | question with its first linked mention masked)."""
    linked = search.entities.link(question)
    assert linked, question
    return search.prior.log_probs(search.encoder.encode([mask_mention(question, linked[0])]))[0]


def test_fitted_without_questions_from_the_kg_alone(fitted):
    search, report = fitted
    assert set(report.questions) == {"generated", "negative"}  # no question file: the KG's own questions only
    assert {NONE_KEY, "capital", "currency^-1/capital"} <= set(search.prior.keys)
    assert search.prior.abstain_threshold is not None and search.prior.answer_threshold is not None


@pytest.mark.parametrize(("question", "asked"), ONE_HOP)
def test_the_asked_relation_is_ranked_first(fitted, question, asked):
    """The path search's most probable grounded chain, the one its answers come from, is the asked relation."""
    search, _ = fitted
    [result] = search.search([question], 5, PathLimits())
    assert result.chains and result.chains[0].key in asked, [(c.key, round(c.prob, 3)) for c in result.chains[:3]]


@pytest.mark.parametrize("question", ABSENT)
def test_a_relation_the_kg_lacks_goes_to_none_or_is_abstained_on(fitted, question):
    search, _ = fitted
    top = search.prior.keys[int(reading(search, question).argmax())]
    [reply] = search_replies(search, RetrieverSettings(), [question], PathOptions(k=5))
    assert top == NONE_KEY or reply.abstain


def test_the_fitted_prior_round_trips_with_its_thresholds(fitted, tmp_path):
    prior = fitted[0].prior
    loaded = RelationPrior.load(prior.save(tmp_path / "demo.relation_prior.npz"))
    assert loaded.keys == prior.keys
    for name in ("weight", "temperature", "mention_penalty", "answer_threshold", "abstain_threshold"):
        assert getattr(loaded, name) == getattr(prior, name), name
    vectors = fitted[0].encoder.encode(["what do they pay with in X", "who is the president of X"])
    np.testing.assert_array_equal(loaded.log_probs(vectors), prior.log_probs(vectors))


def test_the_abstention_rule_follows_what_most_questions_are():
    """A few of a user's own questions beside the KG's generated ones keep the generated questions' rule; a
    question file that outnumbers them (MetaQA's dev beside its one-step questions) takes the files' rule."""
    read = [prior_fitting.TrainingQuestion(f"q{i} [X]", ("Y",), None, "mine.jsonl") for i in range(30)]
    generated = [prior_fitting.TrainingQuestion(f"g{i} [X]", ("Y",), None, "generated", "r") for i in range(300)]
    negatives = [prior_fitting.TrainingQuestion(f"n{i} [X]", (), None, "negative", "<none>") for i in range(500)]
    generated_rule = (prior_fitting.KEEP_ANSWERED_GENERATED, prior_fitting.ABSTAIN_GENERATED)
    assert prior_fitting.abstention_rule(generated + negatives) == generated_rule
    assert prior_fitting.abstention_rule(read + generated + negatives) == generated_rule
    assert prior_fitting.abstention_rule(read * 20 + generated + negatives) == (prior_fitting.KEEP_ANSWERED, None)


@pytest.mark.parametrize(("question", "relation"), IN_OTHER_WORDS)
def test_a_question_in_a_relations_other_words_is_read_as_that_relation_when_it_is_given_them(
    fitted, fitted_with_words, question, relation
):
    """With the words most of the search's mass is on chains that start with the asked relation, and without them
    little is. (Mass rather than the first chain: with five questions a chain on this slice, a one-step question
    may go to a two-step chain through the relation, borders/borders^-1 for "the marches of Peru".)"""
    mass, found = {}, {}
    for name, (search, _) in {"without": fitted, "with": fitted_with_words}.items():
        [result] = search.search([question], 5, PathLimits())
        mass[name] = sum(c.prob for c in result.chains if parse_chain(c.key)[0].relation == relation)
        found[name] = [(c.key, round(c.prob, 3)) for c in result.chains[:3]]
    assert mass["with"] >= 0.5 and mass["without"] <= 0.1, found
