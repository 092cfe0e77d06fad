"""Exponential delay for idle polls and retried calls."""

from __future__ import annotations


class Backoff:
    """Idle/error delay: ``initial`` seconds doubling up to ``maximum``; reset after work."""

    def __init__(self, initial: float = 1.0, maximum: float = 30.0):
        self.initial = initial
        self.maximum = maximum
        self._current = initial

    def next(self) -> float:
        delay = self._current
        self._current = min(self._current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._current = self.initial

    def hold_max(self) -> None:
        self._current = self.maximum
