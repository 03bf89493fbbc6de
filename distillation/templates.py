"""Questions written from a KG's triples with templates, in both directions of each relation.

A forward question asks for the objects of (subject, relation) ("who directed Cube Zero"), an
inverse one for the subjects of (relation, object) ("what movies did Ernie Barbarash direct"); the
gold answers are every entity the KG gives for that pair. MetaQA's 9 relations have several
phrasings each, in MetaQA's own style (lower case, no question mark) and named with its question
types; any other relation falls back to "What is the <relation> of <subject>?" / "What has
<relation> <object>?".
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from retriever_service.entity_linking import ALIAS_RELATIONS
from shared.facts import Triple, relation_label


@dataclass(frozen=True)
class Templates:
    forward: tuple[str, ...]  # "{e}" is the subject; the answers are the objects
    inverse: tuple[str, ...]  # "{e}" is the object; the answers are the subjects
    forward_type: str  # question type of the forward questions
    inverse_type: str


METAQA_TEMPLATES = {
    "directed_by": Templates(
        (
            "who directed {e}",
            "who was the director of {e}",
            "{e} was directed by who",
            "which person directed the film {e}",
        ),
        (
            "what movies did {e} direct",
            "which films were directed by {e}",
            "{e} directed which movies",
            "what films has {e} directed",
        ),
        "movie_to_director",
        "director_to_movie",
    ),
    "written_by": Templates(
        ("who wrote {e}", "who is the writer of {e}", "{e} was written by who", "who wrote the screenplay for {e}"),
        (
            "what movies did {e} write",
            "which films were written by {e}",
            "{e} is the writer of which movies",
            "what films has {e} written",
        ),
        "movie_to_writer",
        "writer_to_movie",
    ),
    "starred_actors": Templates(
        (
            "who acted in {e}",
            "who starred in {e}",
            "the actors in {e} were who",
            "which actors appear in the movie {e}",
        ),
        (
            "what movies did {e} act in",
            "which films did {e} star in",
            "{e} appears in which movies",
            "what films was {e} in",
        ),
        "movie_to_actor",
        "actor_to_movie",
    ),
    "release_year": Templates(
        (
            "when was {e} released",
            "what year did {e} come out",
            "{e} was released in which year",
            "what is the release year of the movie {e}",
        ),
        ("which movies were released in {e}", "what films came out in {e}", "name a movie released in {e}"),
        "movie_to_year",
        "year_to_movie",
    ),
    "in_language": Templates(
        (
            "what language is {e} in",
            "what is the language of the film {e}",
            "{e} is in which language",
            "which language is spoken in {e}",
        ),
        ("which movies are in {e}", "what films are in the {e} language", "name a film in {e}"),
        "movie_to_language",
        "language_to_movie",
    ),
    "has_tags": Templates(
        (
            "what are some words that describe {e}",
            "what topics is {e} about",
            "{e} can be described by which words",
            "what is the movie {e} about",
        ),
        ("which films can be described by {e}", "what movies are about {e}", "which movies are tagged {e}"),
        "movie_to_tags",
        "tag_to_movie",
    ),
    "has_genre": Templates(
        ("what genre is {e}", "what is the genre of the film {e}", "{e} is which genre", "what kind of movie is {e}"),
        ("which movies are {e} films", "name a {e} movie", "what films are in the {e} genre"),
        "movie_to_genre",
        "genre_to_movie",
    ),
    "has_imdb_rating": Templates(
        ("how would people rate {e}", "what is the imdb rating of {e}", "how is {e} rated"),
        ("which movies are rated {e}", "what films have an imdb rating of {e}"),
        "movie_to_imdbrating",
        "imdbrating_to_movie",
    ),
    "has_imdb_votes": Templates(
        ("how popular was {e}", "how many imdb votes did {e} get", "how famous is the movie {e}"),
        ("which movies are {e} on imdb", "what films got {e} imdb votes"),
        "movie_to_imdbvotes",
        "imdbvotes_to_movie",
    ),
}


def generic_templates(relation: str) -> Templates:
    """The fallback for a relation without templates of its own: 'capital' -> 'What is the capital of France?'."""
    words = relation_label(relation).replace("{", "(").replace("}", ")")
    return Templates(
        (f"What is the {words} of {{e}}?", f"What is {{e}}'s {words}?"),
        (f"What has {words} {{e}}?", f"Which entity has {words} {{e}}?"),
        f"{relation} (forward)",
        f"{relation} (inverse)",
    )


@dataclass(frozen=True)
class TemplateQuestion:
    text: str
    answers: tuple[str, ...]
    qtype: str


def template_questions(
    triples: Iterable[Triple], *, limit: int, phrasings: int, max_answers: int, rng: random.Random
) -> list[TemplateQuestion]:
    """Up to `limit` questions from a seeded sample of (entity, relation, direction) pairs, `phrasings` each.

    Alias relations are skipped (the retriever keeps them as names, not facts), and so are pairs
    with more than `max_answers` gold answers.
    """
    pairs: dict[tuple[str, str, bool], list[str]] = defaultdict(list)  # (entity, relation, inverse) -> answers
    for t in triples:
        if t.relation.lower() not in ALIAS_RELATIONS:
            pairs[(t.subject, t.relation, False)].append(t.object)
            pairs[(t.object, t.relation, True)].append(t.subject)
    keys = [key for key, answers in pairs.items() if len(set(answers)) <= max_answers]
    rng.shuffle(keys)
    questions = []
    for entity, relation, inverse in keys:
        templates = METAQA_TEMPLATES.get(relation) or generic_templates(relation)
        texts = templates.inverse if inverse else templates.forward
        qtype = templates.inverse_type if inverse else templates.forward_type
        answers = tuple(dict.fromkeys(pairs[(entity, relation, inverse)]))
        for text in rng.sample(texts, min(phrasings, len(texts))):
            questions.append(TemplateQuestion(text.format(e=entity), answers, qtype))
        if len(questions) >= limit:
            break
    return questions[:limit]
