"""Questions written from a KG's own chains: which chains get questions."""

import random

from retriever_service.kg_graph import KGGraph
from retriever_service.question_generation import chain_questions

COUNTRIES = ["A", "B", "C", "D", "E", "F"]
CURRENCY = {"A": "Euro", "B": "Euro", "C": "Euro", "D": "Franc", "E": "Franc", "F": "Franc"}
BORDERS = [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E"), ("E", "F"), ("F", "A"), ("A", "D")]


def graph() -> KGGraph:
    payloads = [{"subject": c, "relation": "currency", "object": CURRENCY[c]} for c in COUNTRIES]
    for a, b in BORDERS:  # stored both ways, as the demo KG stores borders
        payloads += [{"subject": x, "relation": "borders", "object": y} for x, y in ((a, b), (b, a))]
    return KGGraph.of(payloads)


def test_symmetry_is_read_from_the_edges():
    assert graph().symmetric_relations() == {"borders"}


def test_a_symmetric_relation_twice_gets_no_question_but_a_relation_and_its_inverse_do():
    questions = chain_questions(graph(), max_hops=2, per_chain=20, max_answers=10, rng=random.Random(0), min_topics=1)
    chains = {q.chain for q in questions}
    assert "borders" in chains and "currency" in chains
    assert "currency/currency^-1" in chains  # the countries that share X's currency
    assert not any(c.startswith("borders/borders") for c in chains), sorted(chains)
    shared = next(q for q in questions if q.chain == "currency/currency^-1" and q.topic == "A")
    assert set(shared.answers) == {"B", "C"}


def test_a_relation_only_one_entity_has_still_gets_its_questions():
    g = graph()
    g.add({"subject": "A", "relation": "number of employees", "object": "221000"})
    questions = chain_questions(g, max_hops=2, per_chain=20, max_answers=10, rng=random.Random(0), min_topics=3)
    chains = {q.chain for q in questions}
    assert "number of employees" in chains  # one topic, one step: a relation, kept
    assert "borders/number of employees" in chains  # three countries border A: three topics
    assert "number of employees^-1/currency" not in chains  # two steps from one topic (221000): left out


def test_a_relation_few_entities_have_gets_as_many_questions_as_others_in_new_phrasings():
    """One question per entity left a relation one entity has with one question among many: the prior gave it
    too little mass. Its one entity is asked about in new phrasings up to per_chain; chains of two steps are
    not filled up."""
    g = graph()
    g.add({"subject": "A", "relation": "number of employees", "object": "221000"})
    questions = chain_questions(g, max_hops=2, per_chain=8, max_answers=10, rng=random.Random(0), min_topics=1)
    employees = [q for q in questions if q.chain == "number of employees"]
    assert len(employees) == 8 and len({q.text for q in employees}) == 8
    assert {(q.topic, q.answers) for q in employees} == {("A", ("221000",))}
    assert all("A" in q.text and "number of employees" in q.text for q in employees)
    two_steps = [q for q in questions if q.chain == "number of employees^-1/currency"]
    assert len(two_steps) == 1  # one topic (221000), one question


def test_a_step_every_value_of_which_many_entities_share_still_gets_its_questions():
    """Every region has more countries than max_answers: its inverse step had no question, and the prior never
    offered it. A single step is asked with all its answers; two steps keep the bound."""
    g = KGGraph()
    for i in range(12):
        g.add({"subject": f"Country{i}", "relation": "region", "object": "Oceania" if i % 2 else "Europe"})
        g.add({"subject": f"Country{i}", "relation": "capital", "object": f"City{i}"})
    questions = chain_questions(g, max_hops=2, per_chain=8, max_answers=3, rng=random.Random(0))
    inverse = [q for q in questions if q.chain == "region^-1"]
    assert {q.topic for q in inverse} == {"Oceania", "Europe"} and len(inverse) == 8
    assert {len(q.answers) for q in inverse} == {6}
    assert not any(q.chain == "region^-1/capital" for q in questions)  # six answers each, over the bound of 3
