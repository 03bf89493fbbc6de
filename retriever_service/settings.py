"""Retriever settings: environment variables prefixed `KGRAG_RETRIEVER_` (or passed in by tests)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RetrieverSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KGRAG_RETRIEVER_", extra="ignore")

    environment: str = Field("development", description="anything but 'development' turns on the start-up safety check")
    api_key: SecretStr | None = Field(
        None, description="Bearer key for the API (health, readiness and metrics stay open)"
    )
    host: str = "127.0.0.1"
    port: int = 8001
    data_dir: Path = Field(Path("var/data"), description="Qdrant Edge data directory (embedded store)")
    collection: str = "facts"
    qdrant_url: str | None = Field(
        None,
        validation_alias=AliasChoices("KGRAG_RETRIEVER_QDRANT_URL", "QDRANT_URL"),
        description="Qdrant server URL; ':memory:' for qdrant-client's local mode; unset for Qdrant Edge",
    )
    qdrant_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("KGRAG_RETRIEVER_QDRANT_API_KEY", "QDRANT_API_KEY")
    )
    qdrant_shards: int = Field(1, ge=1, description="shards of a new collection on a Qdrant cluster")
    qdrant_replication_factor: int = Field(1, ge=1, description="copies of each shard on a Qdrant cluster")
    rerank_pool: int = Field(100, ge=1, description="candidates fetched for relation-aware re-ranking")
    tau: float = Field(0.05, gt=0, description="temperature of the prior softmax(score / tau)")
    default_k: int = Field(5, ge=1)
    max_k: int = Field(100, ge=1)
    max_query_chars: int = Field(1000, ge=1)
    max_batch: int = Field(64, ge=1, description="most queries in one batch search")
    max_facts_per_request: int = Field(5000, ge=1)
    max_body_bytes: int = Field(2_000_000, ge=1024)
    max_in_flight: int = Field(64, ge=1, description="most requests served at once; more are refused with 429")
    max_hops: int = Field(3, ge=1, le=3, description="longest relation chain a path search follows (default and limit)")
    path_beam: int = Field(4, ge=1, description="chains grounded per linked entity, the most likely first")
    max_path_beam: int = Field(16, ge=1)
    facts_per_step: int = Field(500, ge=1, description="facts a chain step fetches at most, the most similar first")
    max_facts_per_step: int = Field(5000, ge=1)
    paths_per_chain: int = Field(2000, ge=1, description="partial paths kept per chain after each step")
    max_paths_per_chain: int = Field(20000, ge=1)
    answers: int = Field(500, ge=1, description="answers a path search returns at most")
    max_answers: int = Field(1000, ge=1)
    answer_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="P(answer) an entity needs to be in the answer set; unset: the fitted prior's "
        "(chosen on held-out questions), else 0.5",
    )
    abstain_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="support under which a question is 'not in "
        "the graph'; unset: the fitted prior's, else 0 (never on support alone)",
    )
    encoder_bf16: bool | None = Field(
        None,
        description="bf16 autocast for the encoder's batches; unset: on where bf16 "
        "is native (AMX, AVX512-BF16), emulated and slow elsewhere",
    )
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; None keeps torch's default")

    @model_validator(mode="after")
    def _default_k_within_limit(self) -> RetrieverSettings:
        if self.default_k > self.max_k:
            raise ValueError("default_k must not exceed max_k (a request without k would be refused)")
        pairs = [
            ("path_beam", "max_path_beam"),
            ("facts_per_step", "max_facts_per_step"),
            ("paths_per_chain", "max_paths_per_chain"),
            ("answers", "max_answers"),
        ]
        for default, limit in pairs:
            if getattr(self, default) > getattr(self, limit):
                raise ValueError(f"{default} must not exceed {limit} (a request without it would be refused)")
        return self

    @property
    def relation_prior_path(self) -> Path:
        """Where `kgrag-ingest fit-relations` saves the relation prior of this collection."""
        return self.data_dir / f"{self.collection}.relation_prior.npz"

    @property
    def relation_words_path(self) -> Path:
        """Where `kgrag-ingest fit-relations --relation-words` keeps the words it was given, for later fits."""
        return self.data_dir / f"{self.collection}.relation_words.json"
