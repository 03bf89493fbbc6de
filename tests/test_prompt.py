"""generator_service.prompt with a tokenizer alone (no model): the three parts of a fact's prompt, split
on token boundaries, with a chat template and without."""

import pytest

from generator_service.prompt import ANSWER_CUE, DEFAULT_INSTRUCTION, EXAMPLE, answer_token_ids, build_prompt, render
from tiny_lm import CHAT_TEMPLATE, tiny_tokenizer

QUESTION = "What is the capital of France?"
FACTS = ["France capital Paris", "Germany capital Berlin"]


@pytest.fixture(scope="module", params=[CHAT_TEMPLATE, None], ids=["chat", "plain"])
def tokenizer(request):
    return tiny_tokenizer(request.param)


def test_the_parts_are_the_whole_prompt_text(tokenizer):
    prompt = build_prompt(tokenizer, QUESTION, FACTS)
    assert prompt.head == build_prompt(tokenizer, "Who?", []).head  # the head does not depend on the question
    for fact, suffix in zip(FACTS, prompt.suffixes, strict=True):
        text = render(tokenizer, DEFAULT_INSTRUCTION, f"Question: {QUESTION}\nFact: {fact}")
        assert tokenizer(text, add_special_tokens=not tokenizer.chat_template).input_ids == prompt.prefix + suffix
        assert text.endswith(ANSWER_CUE) and f"{ANSWER_CUE} {EXAMPLE[2]}" in text  # the one shot's answer


def test_an_instruction_of_ones_own(tokenizer):
    mine = build_prompt(tokenizer, QUESTION, FACTS, instruction="Reply with a name.")
    assert "Reply with a name." in tokenizer.decode(mine.head)
    assert mine.question == build_prompt(tokenizer, QUESTION, FACTS).question


def test_an_answer_is_written_after_a_space(tokenizer):
    assert answer_token_ids(tokenizer, "  Paris ") == tokenizer(" Paris", add_special_tokens=False).input_ids
