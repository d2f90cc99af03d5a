"""ClaimPace: how many rows a worker claims ahead of its slots, from how fast it starts them."""

from __future__ import annotations

import time
from collections.abc import Callable

# Claim ahead what the slots will start in this long at their recent pace: enough that slots
# finishing together find rows waiting instead of a claim on its way (docs/benchmarks.md times
# a claim under load), while no row waits claimed for much longer than this.
AHEAD_SECONDS = 0.02
# Starts are counted over this window (two buckets; the older one fades out linearly).
WINDOW_SECONDS = 1.0


class ClaimPace:
    """Rows the slots will start within `AHEAD_SECONDS` at the recent pace, at most `most`.

    A worker whose graphs are short claims enough ahead that its slots do not wait for a claim;
    one whose graphs run long starts few a second, so it claims nothing ahead and leaves the
    rows to other workers.
    """

    def __init__(self, most: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if most < 0:
            raise ValueError("most must be 0 or more")
        self._most = most
        self._clock = clock
        self._bucket_began = clock()
        self._current = 0
        self._previous = 0

    def started(self) -> None:
        """A slot took a claimed row."""
        self._roll()
        self._current += 1

    def starts_per_second(self) -> float:
        """Starts over about the last window."""
        age = self._roll()
        fading = self._previous * (1.0 - age / WINDOW_SECONDS)
        return (fading + self._current) / WINDOW_SECONDS

    def ahead(self) -> int:
        """How many rows to hold claimed beyond the slots waiting now (0 to `most`)."""
        if self._most == 0:
            return 0
        return min(self._most, int(self.starts_per_second() * AHEAD_SECONDS))

    def _roll(self) -> float:
        """Start a new bucket once the current one is a window old; the current bucket's age."""
        now = self._clock()
        age = now - self._bucket_began
        if age >= WINDOW_SECONDS:
            self._previous = self._current if age < 2 * WINDOW_SECONDS else 0
            self._current = 0
            self._bucket_began = now
            return 0.0
        return age
