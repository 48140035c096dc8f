"""A per-event drift detector run over a batch of values, restarting at a fixed horizon.

The drift bank's per-event detector is calibrated on fresh runs of a quarter's events;
Page-Hinkley's statistic (a sum minus its running minimum) only grows with the run, so a
detector left running for a year alarmed far beyond its share. It restarts after
`horizon` values instead, and after a detection (as river's detectors do on the next
update).

`PageHinkleyRun` is river.drift.PageHinkley (two-sided, `numeric_drift`) written as one
loop over the batch with its state in locals: the same operations in the same order on
the same floats, so the detections are the same to the last bit (checked against river
in the tests), at 2.5 times less CPU than river's update per value (175 against 440 ns
here). `DetectorRun` runs any other detector (ADWIN) one update per value.

>>> run = PageHinkleyRun(threshold=5.0, delta=0.1, min_instances=30, horizon=1000)
>>> run.feed([0.0] * 100), run.feed([3.0] * 10)
(False, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

from surveillance.stats.numeric_drift import NumericDriftDetector

#: river.drift.PageHinkley's default forgetting factor, which the bank keeps.
ALPHA = 1 - 0.0001


class StreamRun(Protocol):
    def feed(self, values: Sequence[float]) -> bool:
        """Update with each value in order; True when any update detected drift."""
        ...


class PageHinkleyRun:
    def __init__(
        self,
        threshold: float,
        delta: float,
        min_instances: int,
        horizon: int,
        alpha: float = ALPHA,
    ) -> None:
        self.threshold = threshold
        self.delta = delta
        self.min_instances = min_instances
        self.horizon = horizon
        self.alpha = alpha
        self._run = 0
        self._restart()

    def _restart(self) -> None:
        self._n = 0.0
        self._mean = 0.0
        self._sum_increase = 0.0
        self._sum_decrease = 0.0
        self._min_increase = math.inf
        self._max_decrease = -1.0
        self._detected = False

    def feed(self, values: Sequence[float]) -> bool:
        threshold, delta, alpha = self.threshold, self.delta, self.alpha
        min_instances, horizon = self.min_instances, self.horizon
        run, n, mean = self._run, self._n, self._mean
        s_inc, s_dec = self._sum_increase, self._sum_decrease
        min_inc, max_dec, detected = self._min_increase, self._max_decrease, self._detected
        fired = False
        for x in values:
            run += 1
            if run > horizon or detected:
                if run > horizon:
                    run = 1
                n, mean, s_inc, s_dec = 0.0, 0.0, 0.0, 0.0
                min_inc, max_dec, detected = math.inf, -1.0, False
            n += 1.0
            mean += (1.0 / n) * (x - mean)
            dev = x - mean
            s_inc = alpha * s_inc + dev - delta
            s_dec = alpha * s_dec + dev + delta
            if s_inc < min_inc:
                min_inc = s_inc
            if s_dec > max_dec:
                max_dec = s_dec
            if n >= min_instances:
                detected = s_inc - min_inc > threshold or max_dec - s_dec > threshold
                fired = fired or detected
        self._run, self._n, self._mean = run, n, mean
        self._sum_increase, self._sum_decrease = s_inc, s_dec
        self._min_increase, self._max_decrease, self._detected = min_inc, max_dec, detected
        return fired


class DetectorRun:
    def __init__(self, make: Callable[[], NumericDriftDetector], horizon: int) -> None:
        self._make = make
        self.horizon = horizon
        self._detector = make()
        self._run = 0

    def feed(self, values: Sequence[float]) -> bool:
        fired = False
        for x in values:
            self._run += 1
            if self._run > self.horizon:
                self._detector, self._run = self._make(), 1
            if self._detector.update(x).drift_detected:
                fired = True
        return fired
