"""Chain keys and which of a chain's relations a question names."""

import pytest

from retriever_service.chains import Step, chain_key, chain_words, content_words, named_share, parse_chain


def test_keys_round_trip_and_are_bounded():
    chain = parse_chain("starred_actors^-1/directed_by")
    assert chain == (Step("starred_actors", True), Step("directed_by"))
    assert chain_key(chain) == "starred_actors^-1/directed_by"
    assert chain_words(chain) == "starred actors (reversed) -> directed by"
    for bad in ("", "a/b/c/d", "a//b"):
        with pytest.raises(ValueError):
            parse_chain(bad)


@pytest.mark.parametrize(
    "question, key, share",
    [
        ("Which countries border Germany?", "borders", 1.0),
        ("Which countries border Germany?", "borders/borders", 0.5),  # one word names one step
        ("Which countries border the neighbours of Germany?", "borders/borders", 0.5),
        ("the borders of the borders of Germany", "borders/borders", 1.0),
        ("Which countries border Germany?", "borders/population", 0.5),
        ("who directed the movies starred by Tom Hanks", "starred_actors^-1/directed_by", 1.0),
        ("who directed the movies starred by Tom Hanks", "written_by", 0.0),
        ("what genre is Heat", "has_genre", 1.0),  # "has" names nothing
    ],
)
def test_named_share(question, key, share):
    assert named_share(parse_chain(key), content_words(question)) == share
