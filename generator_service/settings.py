"""Generator settings: environment variables prefixed `KGRAG_GENERATOR_` (or passed in by tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GeneratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KGRAG_GENERATOR_", extra="ignore")

    environment: str = Field("development", description="anything but 'development' turns on the start-up safety check")
    api_key: SecretStr | None = Field(
        None, description="Bearer key for the API (health, readiness and metrics stay open)"
    )
    host: str = "127.0.0.1"
    port: int = 8000

    retriever_url: str = "http://127.0.0.1:8001"
    retriever_api_key: SecretStr | None = Field(None, description="the retriever's API key, if it has one")
    retriever_connect_timeout_s: float = Field(2.0, gt=0)
    retriever_read_timeout_s: float = Field(10.0, gt=0)
    retriever_retries: int = Field(2, ge=0, le=5, description="retries after a connection error (nothing else)")
    retriever_backoff_s: float = Field(0.1, ge=0, description="first retry delay; doubled for each further retry")

    model: str | None = Field(None, description="model directory or .gguf; None: models/student, else SmolLM2")
    cache_dir: Path = Field(Path("var/cache/lm"), description="where a GGUF model is dequantized once")
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: str = "auto"
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; None keeps torch's default")

    default_k: int = Field(5, ge=1)
    max_k: int = Field(20, ge=1)
    max_question_chars: int = Field(1000, ge=1)
    max_answer_chars: int = Field(500, ge=1, description="longest answer /v1/score accepts")
    default_max_new_tokens: int = Field(16, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    max_beams: int = Field(8, ge=1)
    max_batch: int = Field(32, ge=1, description="most questions in one /v1/answer/batch request")

    queue_size: int = Field(64, ge=1, description="questions waiting for the model; more are refused with 429")
    batch_size: int = Field(16, ge=1, description="most questions the worker runs through the model together")
    max_batch_rows: int = Field(256, ge=1, description="most decoding rows (facts x beams, summed) in one batch")
    batch_wait_ms: float = Field(
        100.0,
        ge=0,
        description="longest wait of a batch for questions still being retrieved "
        "(none on their way: it starts at once)",
    )
    answer_timeout_s: float = Field(120.0, gt=0, description="longest wait for a queued question's answer (504)")
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_in_flight: int = Field(128, ge=1, description="most requests served at once; more are refused with 429")

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> GeneratorSettings:
        if self.default_k > self.max_k or self.default_max_new_tokens > self.max_new_tokens:
            raise ValueError(
                "default_k and default_max_new_tokens must not exceed max_k and max_new_tokens "
                "(a request without them would be refused)"
            )
        return self
