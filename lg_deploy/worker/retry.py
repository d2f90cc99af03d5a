"""Which failures are retried, and when: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

from lg_deploy.errors import GraphOutputError, UnknownGraph
from lg_deploy.settings import DEFAULT_BACKOFF_MAX_SECONDS, DEFAULT_BACKOFF_SECONDS

_RANDOM = random.Random()  # noqa: S311  # jitter, not cryptography  # nosec B311

# Failures that would fail again the same way: never retried.
_PERMANENT: tuple[type[BaseException], ...] = (UnknownGraph, GraphOutputError)


@dataclass(frozen=True)
class RetryPolicy:
    """Graph exceptions are retried only when `retry_on_error`; lease loss always is."""

    retry_on_error: bool = False
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS

    def retryable(self, error: BaseException) -> bool:
        """True when a run that raised `error` should run again, if its row has attempts left."""
        return self.retry_on_error and not isinstance(error, _PERMANENT)

    def retries(self, error: BaseException, attempt: int, max_attempts: int) -> bool:
        """True when a run that raised `error` on `attempt` of `max_attempts` should run again."""
        return self.retryable(error) and attempt < max_attempts

    def delay_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds before the next attempt: 2^(attempt-1) x backoff, capped, half of it jittered."""
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        jitter = (rng or _RANDOM).uniform(0, ceiling / 2)
        return ceiling / 2 + jitter
