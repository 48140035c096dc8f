"""Monte Carlo drift thresholds, computed once per exact calibration input.

Calibrating a tool's bank simulates 76,000-95,000 windows per feature and 1,250
quarters per continuous numeric feature (a few seconds of CPU per bank). Its result
depends only on the feature's reference (bin or category counts, standardised values),
the tool's volume and window sizes, the budget share and the seed (the calibration's
own, from the base seed and its identity: `drift_calibration.calibration_seed`, the same
in every process), so it is kept under a digest of exactly those: a bank rebuilt from
the same stored cases after a rebalance, a second bank of the same tool, or a replay
reuses the thresholds instead of simulating again. Thresholds, not detector state, are
shared; a hit returns the very value a fresh calibration would. Entries can be computed
elsewhere (another process) and installed (`entries`, `install`); `cached_only` asks
whether every threshold a build needs is in.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from surveillance.stats.categorical_drift import WindowTestName, WindowThresholds
from surveillance.stats.drift_calibration import calibrate_window_thresholds
from surveillance.stats.numeric_drift import AdwinDetector
from surveillance.stats.psi import FloatArray
from surveillance.stats.stream_calibration import calibrate_page_hinkley, calibrate_stream_detector

#: Entries kept (a few per feature, tool and software version; each a few numbers).
MAX_ENTRIES = 4096
T = TypeVar("T", WindowThresholds, float)
#: Calibration inputs' digests and their thresholds, as one cache hands them to another.
Entries = list[tuple[bytes, WindowThresholds | float]]


class Uncached(LookupError):
    """A threshold not in the cache, asked of a view that may not compute (`cached_only`)."""


def _digest(kind: str, arrays: Sequence[FloatArray], *parameters: object) -> bytes:
    h = hashlib.sha256(kind.encode())
    for array in arrays:
        data = np.ascontiguousarray(array, dtype=np.float64)
        h.update(repr(data.shape).encode())
        h.update(data.tobytes())
    h.update(repr(parameters).encode())
    return h.digest()


class Calibrations:
    """Thresholds by calibration input (see module doc); `computed` counts the misses."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.computed = 0
        self._entries: OrderedDict[bytes, WindowThresholds | float] = OrderedDict()
        self._computes = True

    def cached_only(self) -> Calibrations:
        """A view of the same entries that raises `Uncached` instead of simulating."""
        view = Calibrations(self.max_entries)
        view._entries, view._computes = self._entries, False
        return view

    def entries(self) -> Entries:
        return list(self._entries.items())

    def install(self, entries: Entries) -> None:
        """Thresholds computed by another cache (for the very same inputs: the keys)."""
        for key, value in entries:
            self._entries[key] = value
            self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, key: bytes, compute: Callable[[], T]) -> T:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found  # type: ignore[return-value]
        if not self._computes:
            raise Uncached(key.hex())
        value = compute()
        self.computed += 1
        self._entries[key] = value
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def window_thresholds(
        self,
        reference_counts: FloatArray,
        events_per_window: float,
        per_window_rate: float,
        *,
        seed: int,
        tests: tuple[WindowTestName, ...],
        min_window_events: int,
        window_sizes: Sequence[int] | None,
        min_total_variation: float = 0.0,
    ) -> WindowThresholds:
        sizes = None if window_sizes is None else tuple(int(s) for s in window_sizes)
        key = _digest("window", [reference_counts], events_per_window, per_window_rate, seed,
                      tests, min_window_events, sizes, min_total_variation)
        return self._get(key, lambda: calibrate_window_thresholds(
            reference_counts, events_per_window, per_window_rate, seed=seed, tests=tests,
            min_window_events=min_window_events, window_sizes=window_sizes,
            min_total_variation=min_total_variation))

    def page_hinkley(
        self,
        standardised: FloatArray,
        events_per_quarter: int,
        rate_per_quarter: float,
        *,
        seed: int,
        n_quarters: int,
        min_instances: int,
        delta: float,
    ) -> float:
        key = _digest("page_hinkley", [standardised], events_per_quarter, rate_per_quarter,
                      seed, n_quarters, min_instances, delta)
        return self._get(key, lambda: calibrate_page_hinkley(
            standardised, events_per_quarter, rate_per_quarter, seed=seed,
            n_quarters=n_quarters, min_instances=min_instances, delta=delta))

    def adwin_delta(
        self,
        candidates: tuple[float, ...],
        standardised: FloatArray,
        events_per_quarter: int,
        rate_per_quarter: float,
        *,
        seed: int,
    ) -> float:
        n_quarters = math.ceil(10 / rate_per_quarter)
        key = _digest("adwin", [standardised], candidates, events_per_quarter,
                      rate_per_quarter, seed, n_quarters)
        return self._get(key, lambda: calibrate_stream_detector(
            lambda d: AdwinDetector(delta=d), candidates, standardised, events_per_quarter,
            rate_per_quarter, seed=seed, n_quarters=n_quarters).parameter)
