"""The Gradient2 formula (Netflix's concurrency-limits) that sizes a concurrency limit from call
latencies: a pure calculation, no slots, no clock. ``renderer.concurrency_limit`` enforces it.

A short-term latency (the last calls) is set against a long-term one (what this backend usually
takes). While they agree the limit grows by a queue allowance; when calls slow down it shrinks in
proportion to how much slower they are, smoothed, between ``min_limit`` and ``max_limit``.
``Gradient2.netflix()`` has the library's own defaults (Gradient2Limit with its ExpAvgMeasurement);
``Gradient2()`` ours, and docs/architecture.rst ("Overload and Redis failover") says where they
differ and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


def square_root(limit: float) -> float:
    """Our queue allowance: grows with the limit, slowly."""
    return math.sqrt(limit)


@dataclass
class Gradient2:
    """The limit, and the two latency estimates it is computed from (seconds)."""

    limit: float = 20.0
    min_limit: int = 2
    max_limit: int = 200
    smoothing: float = 0.2
    tolerance: float = 2.0  # how much slower than usual the short latency may be before the limit shrinks
    long_factor: float = 1 / 600  # each sample's weight in the long-term latency, once warmed up
    warmup: int = 1  # the long-term latency is the plain mean of this many first samples
    short_weight: float = 0.5  # the newest sample's weight in the short-term latency (1.0: that sample alone)
    drift_decay: float = 0.95  # the long-term latency's decay when calls get more than twice as fast
    queue: Callable[[float], float] = square_root
    short_rtt: float = 0.0
    long_rtt: float = 0.0
    samples: int = 0

    def __post_init__(self) -> None:
        self.limit = float(max(self.min_limit, min(self.limit, self.max_limit)))

    @classmethod
    def netflix(cls) -> Gradient2:
        """Gradient2Limit's defaults in Netflix's library: limits 20..200, smoothing 0.2, the short
        latency the last sample, the long one a mean of 10 then an average of factor 2/(600+1),
        no tolerance, a queue allowance of 4, a 0.9 decay."""
        return cls(
            limit=20,
            min_limit=20,
            max_limit=200,
            tolerance=1.0,
            long_factor=2 / 601,
            warmup=10,
            short_weight=1.0,
            drift_decay=0.9,
            queue=lambda limit: 4.0,
        )

    def update(self, rtt: float, in_flight: int) -> float:
        """Learn from one call that took ``rtt`` seconds with ``in_flight`` calls running; the new limit."""
        queue = self.queue(self.limit)
        self.short_rtt = rtt if self.samples == 0 else self.short_rtt + self.short_weight * (rtt - self.short_rtt)
        self.samples += 1
        weight = 1 / self.samples if self.samples <= self.warmup else self.long_factor
        self.long_rtt += weight * (rtt - self.long_rtt)
        if self.long_rtt / self.short_rtt > 2:
            # Calls got much faster (the slow period is over): let the baseline catch up.
            self.long_rtt *= self.drift_decay
        # Growing while the limit is far from used would only grow a number: the app is the limit.
        if in_flight < self.limit / 2:
            return self.limit
        gradient = max(0.5, min(1.0, self.tolerance * self.long_rtt / self.short_rtt))
        wanted = self.limit * gradient + queue
        smoothed = (1 - self.smoothing) * self.limit + self.smoothing * wanted
        self.limit = max(self.min_limit, min(self.max_limit, smoothed))
        return self.limit
