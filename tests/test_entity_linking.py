from retriever_service.entity_linking import EntityIndex
from shared.names import fold, fold_tokens

FACTS = [
    {"subject": "Forrest Gump", "relation": "directed_by", "object": "Robert Zemeckis"},
    {"subject": "Forrest Gump", "relation": "starred_actors", "object": "Tom Hanks"},
    {"subject": "Big", "relation": "starred_actors", "object": "Tom Hanks"},
    {"subject": "Her", "relation": "directed_by", "object": "Spike Jonze"},
    {"subject": "Amélie", "relation": "directed_by", "object": "Jean-Pierre Jeunet"},
    {"subject": "Tom", "relation": "release_year", "object": "2002"},
    {"subject": "United Kingdom", "relation": "also known as", "object": "Great Britain"},
    {"subject": "The To Do List", "relation": "directed_by", "object": "Maggie Carey"},
    {"subject": "Forrest Gump", "relation": "has_tags", "object": "director"},
    {"subject": "In America", "relation": "directed_by", "object": "Jim Sheridan"},
    {"subject": "America 3000", "relation": "directed_by", "object": "David Engelbach"},
]


def index():
    idx = EntityIndex()
    idx.update(FACTS)
    return idx


def mentions(idx, question):
    return [e.names for e in idx.link(question)]


def test_folding():
    assert fold_tokens("Amélie (2001)!") == ["amelie", "2001"]
    assert fold("Jean-Pierre  JEUNET") == "jean pierre jeunet"


def test_longest_match_first():
    assert mentions(index(), "what films did tom hanks star in")[0] == ("Tom Hanks",)  # not the film "Tom"


def test_bracket_hint_and_without_brackets():
    idx = index()
    hinted = idx.link("who directed [Forrest Gump]")
    assert hinted[0].names == ("Forrest Gump",) and hinted[0].hinted
    assert mentions(idx, "who directed forrest gump") == [("Forrest Gump",)]


def test_case_accents_punctuation_folded():
    assert mentions(index(), "Who directed AMELIE?") == [("Amélie",)]
    assert mentions(index(), "movies by jean pierre jeunet") == [("Jean-Pierre Jeunet",)]


def test_common_word_titles_only_as_last_resort():
    idx = index()
    assert mentions(idx, "who directed her film with tom hanks")[0] == ("Tom Hanks",)
    assert ("Her",) not in mentions(idx, "who directed her film with tom hanks")
    assert mentions(idx, "who directed her") == [("Her",)]


def test_long_titles_of_common_words_are_names():
    assert mentions(index(), "who is the director of the to do list") == [("The To Do List",), ("director",)]


def test_a_span_that_lost_an_overlap_is_a_second_choice():
    assert mentions(index(), "who directed in america 3000") == [("In America",), ("America 3000",)]
    assert mentions(index(), "who directed in america") == [("In America",)]
    assert mentions(index(), "what films did tom hanks star in") == [("Tom Hanks",)]  # "tom" lies inside it


def test_aliases_link_to_the_subject():
    assert mentions(index(), "what is the capital of great britain") == [("United Kingdom",)]


def test_names_folding_alike_narrowed_to_the_one_written():
    idx = EntityIndex()
    idx.update(
        [
            {"subject": "Japan", "relation": "time zone", "object": "UTC+09:00"},
            {"subject": "United States", "relation": "time zone", "object": "UTC-09:00"},
            {"subject": "Alaska", "relation": "also known as", "object": "UTC+09:00"},  # an alias spelled alike
        ]
    )
    assert mentions(idx, "which countries are in the UTC+09:00 time zone") == [("Alaska", "UTC+09:00")]
    assert mentions(idx, "which countries are in the utc-09:00 time zone") == [("Alaska", "UTC-09:00")]
    assert idx.link("which countries are in [UTC-09:00]")[0].names == ("Alaska", "UTC-09:00")
    assert mentions(idx, "which countries are in utc 09 00") == [("Alaska", "UTC+09:00", "UTC-09:00")]  # neither


def test_bracket_not_in_kg_falls_back_to_scan():
    assert mentions(index(), "did [Nobody Known] work with spike jonze")[0] == ("Spike Jonze",)


def test_removing_facts_forgets_unused_names():
    idx = index()
    idx.update([FACTS[2]], -1)  # Big starred Tom Hanks
    assert idx.lookup("big") == ()
    assert idx.lookup("tom hanks") == ("Tom Hanks",)  # still used by Forrest Gump
    idx.update([FACTS[1]], -1)
    assert idx.lookup("tom hanks") == ()


def test_no_entity():
    assert index().link("what is the meaning of life") == []


def test_steps_of_kind_are_those_of_every_entity_sharing_a_step():
    idx = index()
    films = {("directed_by", False), ("starred_actors", False), ("has_tags", False)}
    assert idx.steps_of_kind(("Big",)) == films  # Big stars Tom Hanks; Forrest Gump, which does too, has the rest
    assert ("release_year", False) in idx.steps_of_kind(("Tom",))  # a film that shares no step with the others
    assert idx.steps_of_kind(("Spike Jonze",)) == {("directed_by", True)}  # no director here acts
    assert idx.steps_of_kind(("Zorblax",)) == set()


def test_steps_of_kind_follow_added_and_removed_facts():
    idx = index()
    acting = {"subject": "Her", "relation": "starred_actors", "object": "Spike Jonze"}
    assert ("starred_actors", True) not in idx.steps_of_kind(("Robert Zemeckis",))
    idx.update([acting])
    assert ("starred_actors", True) in idx.steps_of_kind(("Robert Zemeckis",))  # a director who acts: directors can
    idx.update([acting], -1)
    assert ("starred_actors", True) not in idx.steps_of_kind(("Robert Zemeckis",))
