"""FastAPI dependencies of the generator: the app state, the loaded model, the request id, and the
checks of the limits that come from settings (422 with the limit in the message)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from generator_service.rag import RagGenerator
from generator_service.schemas import GenerationOptions
from generator_service.settings import GeneratorSettings
from generator_service.state import GeneratorState
from shared.errors import ServiceError, request_id_of


def get_state(request: Request) -> GeneratorState:
    return request.app.state.generator


State = Annotated[GeneratorState, Depends(get_state)]
RequestId = Annotated[str | None, Depends(request_id_of)]


def loaded_generator(state: State) -> RagGenerator:
    if state.generator is None:
        message = f"the model failed to load: {state.load_error}" if state.load_error else "the model is loading"
        raise ServiceError(503, "model_not_ready", message, headers={"Retry-After": "5"})
    return state.generator


Generator = Annotated[RagGenerator, Depends(loaded_generator)]


def _in_range(name: str, value: int, limit: int) -> None:
    if value > limit:
        raise ServiceError(422, f"{name}_out_of_range", f"{name} must be between 1 and {limit}, got {value}")


def check_k(settings: GeneratorSettings, k: int | None) -> int:
    k = k or settings.default_k
    _in_range("k", k, settings.max_k)
    return k


def check_options(settings: GeneratorSettings, options: GenerationOptions) -> tuple[int, int]:
    """(k, max_new_tokens) with the defaults filled in, once every option is within the limits."""
    max_new_tokens = options.max_new_tokens or settings.default_max_new_tokens
    _in_range("max_new_tokens", max_new_tokens, settings.max_new_tokens)
    _in_range("num_beams", options.num_beams, settings.max_beams)
    return check_k(settings, options.k), max_new_tokens


def check_text(name: str, text: str, limit: int, where: str = "") -> None:
    """`where` prefixes the message, e.g. "questions[3]: "."""
    if not text.strip():
        raise ServiceError(422, f"empty_{name}", f"{where}the {name} is empty")
    if len(text) > limit:
        raise ServiceError(
            422, f"{name}_too_long", f"{where}the {name} has {len(text)} characters; the limit is {limit}"
        )


def check_batch(settings: GeneratorSettings, questions: list[str]) -> None:
    if len(questions) > settings.max_batch:
        raise ServiceError(422, "batch_too_large", f"{len(questions)} questions; the limit is {settings.max_batch}")
    for i, question in enumerate(questions):
        check_text("question", question, settings.max_question_chars, where=f"questions[{i}]: ")
