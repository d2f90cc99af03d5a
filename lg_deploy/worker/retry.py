"""Which failures are retried, and when: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

import psycopg

from lg_deploy.errors import GraphOutputError, StaleAttempt, UnknownGraph
from lg_deploy.settings import DEFAULT_BACKOFF_MAX_SECONDS, DEFAULT_BACKOFF_SECONDS

_RANDOM = random.Random()  # noqa: S311  # jitter, not cryptography  # nosec B311

# Failures that would fail again the same way: never retried.
_PERMANENT: tuple[type[BaseException], ...] = (UnknownGraph, GraphOutputError, StaleAttempt)
# Failures of the database under a graph, not of the graph: a run on a thread saves its steps as
# it goes, so a PostgreSQL restart or a terminated backend surfaces in the graph as a lost
# connection (psycopg's OperationalError: also a pool timeout, a deadlock, a cancelled query).
# Always retried, as a lost lease is; the next attempt goes on from the last saved step.
_TRANSIENT: tuple[type[BaseException], ...] = (psycopg.OperationalError,)


@dataclass(frozen=True)
class RetryPolicy:
    """Graph exceptions are retried only when `retry_on_error`; lease loss and a lost database
    connection always are."""

    retry_on_error: bool = False
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS

    def retryable(self, error: BaseException) -> bool:
        """True when a run that raised `error` should run again, if its row has attempts left."""
        if isinstance(error, _PERMANENT):
            return False
        return self.retry_on_error or isinstance(error, _TRANSIENT)

    def retries(self, error: BaseException, attempt: int, max_attempts: int) -> bool:
        """True when a run that raised `error` on `attempt` of `max_attempts` should run again."""
        return self.retryable(error) and attempt < max_attempts

    def delay_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds before the next attempt: 2^(attempt-1) x backoff, capped, half of it jittered."""
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        jitter = (rng or _RANDOM).uniform(0, ceiling / 2)
        return ceiling / 2 + jitter
