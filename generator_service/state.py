"""What the generator app holds while it runs: settings, metrics, the retriever client, the model
and the batchers that feed it.

The model runs on one worker thread (torch is CPU bound and uses its own thread pool), shared by
the answer and the score batchers, so model calls never overlap. Without a model passed in, it
is loaded in the background on that thread: /readyz says 503 until it is there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypedDict

from prometheus_client import Counter, Gauge, Histogram

from generator_service.batching import Batcher
from generator_service.lm_loading import load_causal_lm
from generator_service.rag import RagGenerator, RagRequest, RagResult, decoding_rows
from generator_service.retriever_client import RetrieverClient
from generator_service.search_coalescing import SearchCoalescer
from generator_service.settings import GeneratorSettings
from shared.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorMetrics:
    http: Metrics
    queue_size: Gauge
    generated_tokens: Counter
    generation_seconds: Histogram
    seconds_per_token: Histogram
    retriever_seconds: Histogram

    @classmethod
    def create(cls) -> GeneratorMetrics:
        m = Metrics("generator")
        return cls(
            http=m,
            queue_size=m.gauge("queue_size", "questions waiting for the model (answer and score queues)"),
            generated_tokens=m.counter("generated_tokens", "answer tokens generated"),
            generation_seconds=m.histogram("generation_duration_seconds", "model time per answer batch"),
            seconds_per_token=m.histogram("seconds_per_token", "model time per answer batch / tokens it generated"),
            retriever_seconds=m.histogram("retriever_call_duration_seconds", "retriever HTTP calls, retries included"),
        )


class _BatchLimits(TypedDict):
    """The Batcher arguments the answer and score queues share."""

    executor: Executor
    queue_size: int
    max_items: int
    max_rows: int
    wait_s: float


@dataclass(frozen=True)
class ScoreJob:
    question: str
    facts: list[str]
    log_priors: list[float]
    answer: str

    @property
    def rows(self) -> int:
        return decoding_rows(len(self.facts))


class GeneratorState:
    def __init__(
        self,
        settings: GeneratorSettings,
        metrics: GeneratorMetrics,
        retriever: RetrieverClient,
        generator: RagGenerator | None,
    ) -> None:
        self.settings, self.metrics, self.retriever, self.generator = settings, metrics, retriever, generator
        self.searches = SearchCoalescer(retriever, max_batch=settings.batch_size)  # concurrent searches, one call
        self.load_error: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        limits = _BatchLimits(
            executor=self._executor,
            queue_size=settings.queue_size,
            max_items=settings.batch_size,
            max_rows=settings.max_batch_rows,
            wait_s=settings.batch_wait_ms / 1000,
        )
        self.answers: Batcher[RagRequest, RagResult] = Batcher(self._generate, lambda request: request.rows, **limits)
        self.scores: Batcher[ScoreJob, RagResult] = Batcher(self._score, lambda job: job.rows, **limits)
        metrics.queue_size.set_function(lambda: self.answers.pending + self.scores.pending)

    def start(self) -> None:
        self.answers.start()
        self.scores.start()

    async def close(self) -> None:
        """Stop accepting, answer what is queued, then release the model thread and the retriever client."""
        await asyncio.gather(self.answers.close(), self.scores.close())
        self._executor.shutdown(wait=True)
        await self.retriever.aclose()

    async def load_model(self) -> None:
        """Load the configured model on the model thread; a failure is kept for /readyz to report."""
        s = self.settings
        start = time.perf_counter()
        try:
            lm = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: load_causal_lm(s.model, cache_dir=s.cache_dir, dtype=s.dtype, device=s.device)
            )
            self.generator = RagGenerator(lm)
        except Exception as exc:  # a background task: there is no caller to raise to
            log.exception("model load failed")
            self.load_error = f"{type(exc).__name__}: {exc}"
            return
        log.info("model %s loaded in %.1fs", self.generator.name, time.perf_counter() - start)

    def _generate(self, requests: list[RagRequest]) -> list[RagResult]:
        assert self.generator is not None  # the routes refuse requests (503) until the model is loaded
        start = time.perf_counter()
        results = self.generator.generate(requests)
        elapsed = time.perf_counter() - start
        tokens = sum(result.new_tokens for result in results)
        self.metrics.generation_seconds.observe(elapsed)
        self.metrics.generated_tokens.inc(tokens)
        if tokens:
            self.metrics.seconds_per_token.observe(elapsed / tokens)
        return results

    def _score(self, jobs: list[ScoreJob]) -> list[RagResult]:
        assert self.generator is not None  # as in _generate
        return [self.generator.score(job.question, job.facts, job.log_priors, job.answer) for job in jobs]
