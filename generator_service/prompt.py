"""The generator's prompt: an instruction, a one-shot example, the question, one fact, the answer cue.

Every fact's prompt has three parts, tokenized separately so that they can be shared: the head
[instruction + the one-shot example], the same for every question; the question line (up to
"Fact:"), shared by the question's facts; and the fact suffix (the fact and the answer cue
"Answer:", inside the assistant turn, so that the model answers " Paris" rather than "The capital
of France is Paris."). The split falls on token boundaries: the three parts' ids are the ids of
the whole text. With a chat template the parts are the system, user and assistant turns; without
one, plain lines. The answer follows the cue after a space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

DEFAULT_INSTRUCTION = "Answer the question with the entity named in the fact. Reply with the entity name only."
EXAMPLE = ("What is the capital of Italy?", "Italy capital Rome", "Rome")  # question, fact, answer: the one shot
ANSWER_CUE = "Answer:"  # ends every prompt; the answer follows after a space
_QUESTION_SLOT = "\u241eQUESTION\u241e"  # marks where the question starts in the rendered template
_FACT_SLOT = "\u241eFACT\u241e"  # marks where the fact goes


@dataclass(frozen=True)
class PromptIds:
    head: list[int]  # instruction + example: the same for every question
    question: list[int]  # the question line: shared by every fact
    suffixes: list[list[int]]  # per fact: fact + answer cue; prefix + suffixes[k] is fact k's prompt

    @property
    def prefix(self) -> list[int]:
        """The part shared by the question's facts: head + question."""
        return self.head + self.question


def build_prompt(
    tokenizer: PreTrainedTokenizerBase, question: str, facts: Sequence[str], instruction: str = DEFAULT_INSTRUCTION
) -> PromptIds:
    """Token ids of the head, the question line and each fact's suffix, tokenized separately.

    With a chat template: system = instruction, then the example as a user turn ("Question:
    ...\\nFact: ...") and an assistant turn ("Answer: Rome"), then the question's user turn and
    the assistant cue plus "Answer:". The splits fall right before "Question:" and right after
    "Fact:", so a fact suffix is " <fact><end of turn, assistant cue>Answer:".
    """
    text = render(tokenizer, instruction, f"{_QUESTION_SLOT}Question: {question}\nFact:{_FACT_SLOT}")
    head, _, rest = text.partition(_QUESTION_SLOT)
    question_line, _, cue = rest.rpartition(_FACT_SLOT)
    return PromptIds(
        head=tokenizer(head, add_special_tokens=not tokenizer.chat_template).input_ids,
        question=tokenizer(question_line, add_special_tokens=False).input_ids,
        suffixes=[tokenizer(f" {fact}{cue}", add_special_tokens=False).input_ids for fact in facts],
    )


def answer_token_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """The ids of an answer as the model writes it after the answer cue (a space, then the answer)."""
    return tokenizer(f" {answer.strip()}", add_special_tokens=False).input_ids


def render(tokenizer: PreTrainedTokenizerBase, instruction: str, user: str) -> str:
    """The whole prompt text for one user turn, with the instruction and the one-shot example first."""
    example_question, example_fact, example_answer = EXAMPLE
    example = f"Question: {example_question}\nFact: {example_fact}"
    answer = f"{ANSWER_CUE} {example_answer}"
    if not tokenizer.chat_template:
        return f"{instruction}\n\n{example}\n{answer}\n\n{user}\n{ANSWER_CUE}"
    messages = [
        {"role": "system", "content": instruction},
        {"role": "user", "content": example},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": user},
    ]
    # tokenize=False returns the text; transformers types the result as a union with the token ids
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + ANSWER_CUE  # type: ignore[operator]
