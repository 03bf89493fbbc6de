"""Questions written from a KG itself, for a chain prior on a KG without training questions.

A chain becomes a noun phrase built from its topic outwards, each step wrapping the phrase so far:
a forward step r gives "the r of <phrase>" (or "<phrase>'s r"), an inverse step "the one whose r
is <phrase>" (or "the one with r <phrase>", "the one that has <phrase> as its r"); a question asks
for the phrase ("what is the capital of the one whose currency is Yen"). Every relation's own words
are used (`shared.facts.relation_label`), so any KG gets questions about its every relation, in both
directions and in chains, in phrasings drawn at random; a relation with other words
(`relation_words.py`: "neighbours" for `borders`) is named by one of them, or its label, drawn at random.

Negatives ask, in the same phrasings, for relations the KG does not have ("who is the president
of France" on a KG of capitals and currencies): the prior learns to put them on `NONE_KEY`, which
is what lets the retriever say "not in the graph" instead of offering the nearest relation.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from retriever_service.chains import NONE_KEY, SEPARATOR, Chain, Step, chain_key, parse_chain
from retriever_service.kg_graph import KGGraph
from retriever_service.relation_words import RelationWords
from retriever_service.type_nouns import plural
from shared.facts import relation_label
from shared.names import fold_tokens

QUESTION_FORMS = (
    "what is {np}",
    "which is {np}",
    "{np} is what",
    "tell me {np}",
    "name {np}",
    "who is {np}",
    "give me {np}",
    "do you know {np}",
    "what's {np}",
)
LIST_FORMS = ("what are {np}", "which are {np}", "list {np}", "name all {np}", "who are {np}", "{np} are what")
# when the kind of the answers is known (`type_nouns.py`): {t} the noun, {ts} its plural
TYPED_FORMS = ("which {t} is {np}", "what {t} is {np}")
TYPED_LIST_FORMS = ("which {ts} are {np}", "what {ts} are {np}", "list the {ts} that are {np}")
FORWARD_FORMS = ("the {r} of {np}", "the {r} of {np}", "{np}'s {r}")  # the possessive only around an entity
# {t}: "one", or the noun of the step's ends ("the country whose currency is Yen")
INVERSE_FORMS = ("the {t} whose {r} is {np}", "the {t} with {r} {np}", "the {t} that has {np} as its {r}")
PLURAL_INVERSE_FORMS = (*INVERSE_FORMS[:2], "the {t} that have {np} as their {r}")
# a question whose last step is inverse may put what it starts from first
ENTITY_FIRST_FORMS = (
    "{e} is the {r} of which {t}",
    "which {t} has {e} as its {r}",
    "{e} is the {r} of what",
    "whose {r} is {e}",
)
# Relations people ask about that a given KG may lack; those whose words the KG's relations share are left out.
ABSENT_RELATIONS = (
    "president",
    "prime minister",
    "head of state",
    "mayor",
    "founder",
    "founding date",
    "ceo",
    "owner",
    "spouse",
    "wife",
    "husband",
    "children",
    "father",
    "mother",
    "birth place",
    "birth date",
    "death date",
    "age",
    "height",
    "weight",
    "nationality",
    "religion",
    "national anthem",
    "motto",
    "gdp",
    "budget",
    "box office",
    "revenue",
    "producer",
    "composer",
    "cinematographer",
    "editor",
    "studio",
    "distributor",
    "awards",
    "sequel",
    "prequel",
    "filming location",
    "runtime",
    "color",
    "price",
    "address",
    "phone number",
    "email",
    "website",
    "salary",
    "highest mountain",
    "longest river",
    "national animal",
    "national sport",
    "climate",
    "famous people",
    "inventor",
    "author",
    "publisher",
    "album",
    "team",
    "coach",
    "stadium",
    "university",
    "employees",
)


@dataclass(frozen=True)
class GeneratedQuestion:
    text: str
    answers: tuple[str, ...]  # empty for a negative
    chain: str  # the chain's key, or NONE_KEY
    topic: str  # the entity the question is about


def noun_phrase(
    entity: str,
    chain: Chain,
    rng: random.Random | None = None,
    types: Mapping[Step, str] | None = None,
    plural_end: bool = False,
    words: RelationWords | None = None,
) -> str:
    """'the capital of the one whose currency is Yen' for (Yen, currency^-1 / capital); with rng, each step's
    form drawn at random, else the first form of each; with types, an inverse step names its ends by their
    noun half the time ("the country whose currency is Yen"), in the plural for the last step of a list
    question (plural_end); with words, each relation named by a word drawn from them."""
    phrase = entity
    for depth, step in enumerate(chain):
        if not step.inverse:
            forms = FORWARD_FORMS[: 3 if depth == 0 else 2]
            phrase = (rng.choice(forms) if rng else forms[0]).format(r=_word(step, words, rng), np=phrase)
            continue
        many = plural_end and depth == len(chain) - 1
        noun = _noun(step, types, rng, many)
        forms = PLURAL_INVERSE_FORMS if many else INVERSE_FORMS
        form = rng.choice(forms) if rng else forms[0]
        phrase = form.format(t=noun, r=_word(step, words, rng), np=phrase)
    return phrase


def _word(step: Step, words: RelationWords | None, rng: random.Random | None) -> str:
    """The words the step's relation is named by: its label, or one of its words drawn at random (no draw for a
    relation with its label alone, so that a KG without words gets the same questions as with none given)."""
    if words is None or rng is None:
        return relation_label(step.relation)
    choices = words.of(step.relation)
    return choices[0] if len(choices) == 1 else rng.choice(choices)


def _noun(step: Step, types: Mapping[Step, str] | None, rng: random.Random | None, many: bool = False) -> str:
    """The step's noun (its plural when many), half the time when rng draws; else "one" ("ones")."""
    noun = (types or {}).get(step)
    if noun is None or (rng is not None and rng.random() < 0.5):
        return "ones" if many else "one"
    return plural(noun) if many else noun


def phrase_question(
    entity: str,
    chain: Chain,
    answers: int,
    rng: random.Random,
    types: Mapping[Step, str] | None = None,
    words: RelationWords | None = None,
) -> str:
    """A question asking for the chain from the entity, in forms drawn at random; a list form for a chain with
    several answers half the time, a form naming the answers' kind when types give it half the time."""
    last = chain[-1]
    if last.inverse and rng.random() < 0.4:
        inner = noun_phrase(entity, chain[:-1], rng, types, words=words)
        form = rng.choice(ENTITY_FIRST_FORMS)
        return form.format(e=inner, r=_word(last, words, rng), t=_noun(last, types, rng))
    many = answers > 1 and rng.random() < 0.5
    noun = (types or {}).get(last)
    if noun is not None and rng.random() < 0.5:
        typed = TYPED_LIST_FORMS if many else TYPED_FORMS
        form = rng.choice(typed)  # drawn before the phrase's own draws
        return form.format(np=noun_phrase(entity, chain, rng, types, many, words), t=noun, ts=plural(noun))
    forms = LIST_FORMS if many else QUESTION_FORMS
    return rng.choice(forms).format(np=noun_phrase(entity, chain, rng, types, many, words))


def _repeats(chain: Chain, symmetric: set[str]) -> bool:
    """Whether a chain takes one step twice in a row, or a symmetric relation twice in a row."""
    pairs = zip(chain, chain[1:], strict=False)
    return any(a == b or (a.relation == b.relation and a.relation in symmetric) for a, b in pairs)


def chain_questions(
    graph: KGGraph,
    *,
    max_hops: int,
    per_chain: int,
    max_answers: int,
    rng: random.Random,
    max_entities: int = 20000,
    min_topics: int = 3,
    types: Mapping[Step, str] | None = None,
    words: RelationWords | None = None,
) -> list[GeneratedQuestion]:
    """Up to per_chain questions for each chain of at most max_hops steps that some entity's walk answers with
    1 to max_answers entities (a single step: with any number the walk follows, up to 20 times that); entities
    are visited in a seeded order, at most max_entities of them. A step whose every value is shared by many
    entities (`region^-1`: each region has 28 to 59 countries) had no question otherwise, the prior never
    offered it, and "Which countries are in Oceania?" went to `region^-1/borders^-1`.

    Left out: a chain of two or more steps answered from fewer than min_topics entities (a chance
    composition, not a relation; a single relation stays however few entities have it: in a small DBpedia
    extract only Microsoft may have a number of employees, and without its questions the prior put that
    question's mass on chains from other entities); and a chain that takes the same step twice in a row, or a
    symmetric relation twice ("the borders of the borders of X"): written in the same words as the one-step
    question, these drew the prior to themselves (borders/borders, borders/borders^-1, ...: four of them to
    the one-step question's two). A relation and its inverse stay when the relation is not symmetric ("films
    that share an actor with X").

    A single step that fewer than per_chain entities answer gets more phrasings of the same entities, up to
    per_chain questions (`_more_phrasings`): with one question per entity, a relation one entity has was one
    question among a hundred on a small DBpedia extract, and the prior gave it too little mass."""
    symmetric = graph.symmetric_relations()
    entities = sorted(e for e in graph.entities() if graph.is_answer(e))
    rng.shuffle(entities)
    found: dict[str, list[GeneratedQuestion]] = defaultdict(list)
    for entity in entities[:max_entities]:
        for chain, answers in graph.chains_from({entity}, max_hops, max_frontier=max_answers * 20):
            if _repeats(chain, symmetric):
                continue
            bucket = found[chain_key(chain)]
            if (len(answers) <= max_answers or len(chain) == 1) and len(bucket) < per_chain:
                text = phrase_question(entity, chain, len(answers), rng, types, words)
                bucket.append(GeneratedQuestion(text, tuple(sorted(answers)), chain_key(chain), entity))
    for key, bucket in found.items():
        if SEPARATOR not in key:
            _more_phrasings(bucket, per_chain, rng, types, words)
    return [q for key, bucket in found.items() if len(bucket) >= min_topics or SEPARATOR not in key for q in bucket]


def _more_phrasings(
    bucket: list[GeneratedQuestion],
    per_chain: int,
    rng: random.Random,
    types: Mapping[Step, str] | None,
    words: RelationWords | None = None,
) -> None:
    """Fill a chain's questions up to per_chain with new phrasings of the entities it has questions about
    (each text once; a bounded number of draws, since an entity has finitely many phrasings)."""
    if not bucket:
        return
    seen = {q.text for q in bucket}
    written = list(bucket)
    chain = parse_chain(bucket[0].chain)  # one bucket, one chain
    for _ in range(4 * per_chain):
        if len(bucket) >= per_chain:
            return
        q = rng.choice(written)
        text = phrase_question(q.topic, chain, len(q.answers), rng, types, words)
        if text not in seen:
            seen.add(text)
            bucket.append(GeneratedQuestion(text, q.answers, q.chain, q.topic))


def absent_relations(graph: KGGraph, words: RelationWords | None = None) -> list[str]:
    """ABSENT_RELATIONS whose words no relation of the graph uses, in its label or its other words."""
    names = [relation_label(r) for r in graph.relations()] + list((words or RelationWords()).all_words())
    used = {word for name in names for word in fold_tokens(name)}
    return [r for r in ABSENT_RELATIONS if used.isdisjoint(fold_tokens(r))]


def negative_questions(
    graph: KGGraph, topics: list[str], count: int, rng: random.Random, words: RelationWords | None = None
) -> list[GeneratedQuestion]:
    """count questions about absent relations of the given topic entities, labelled NONE_KEY."""
    relations = absent_relations(graph, words)
    if not relations or not topics:
        return []
    out = []
    for _ in range(count):
        topic, relation = rng.choice(topics), rng.choice(relations)
        phrase = rng.choice(FORWARD_FORMS).format(r=relation, np=topic)
        out.append(GeneratedQuestion(rng.choice(QUESTION_FORMS).format(np=phrase), (), NONE_KEY, topic))
    return out
