"""Typed wrappers around river's numeric drift detectors: ADWIN, Page-Hinkley, KSWIN.

River's shape is kept: parameters under their own names, `update(x)` returns self,
`drift_detected` is a property that is true right after the update that detected a
change (river resets the detector's state on the next update). What the wrappers add:
types, and a `DriftParameterError` (a ValueError) with one clear line for every
parameter river would accept but that makes no sense (river validates only some).

>>> import random
>>> rng = random.Random(7)
>>> ph = PageHinkleyDetector(threshold=20.0, delta=0.1)
>>> stream = [rng.gauss(0, 1) for _ in range(300)] + [rng.gauss(1.5, 1) for _ in range(300)]
>>> [i for i, x in enumerate(stream) if ph.update(x).drift_detected]
[310, 497]
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Iterable
from types import ModuleType, SimpleNamespace
from typing import Any, Literal, Protocol, Self

from surveillance.errors import SurveillanceError


def _river_drift_module(name: str) -> ModuleType:
    """river's `river.drift.<name>`, loaded without the `river.drift` package: its
    `__init__` also imports river's sample datasets, and with them scikit-learn and
    pandas (~0.7 s of CPU and ~75 MiB in each process that runs the engine: the worker,
    its calibration child, the backfill) for data this service never reads. The module
    is registered under its own name, so a later `import river.drift` (a test, another
    library) takes this very module: one class each (`tests/test_import_weight.py`).
    Should river's layout change (the file moved, or it imports its own package), the
    package is imported as usual: slower, the same classes."""
    full = f"river.drift.{name}"
    found = sys.modules.get(full)
    if found is not None:
        return found
    river = importlib.util.find_spec("river")
    spec = None
    if river is not None and river.submodule_search_locations:
        root = next(iter(river.submodule_search_locations))
        location = os.path.join(root, "drift", f"{name}.py")
        if os.path.isfile(location):
            spec = importlib.util.spec_from_file_location(full, location)
    if spec is None or spec.loader is None:
        return importlib.import_module(full)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        spec.loader.exec_module(module)
    except ImportError:
        sys.modules.pop(full, None)
        return importlib.import_module(full)
    except BaseException:
        sys.modules.pop(full, None)
        raise
    return module


# river's constructors and update() carry no annotations; an Any-typed namespace keeps
# mypy --strict checking everything on our side of the call.
drift: Any = SimpleNamespace(
    ADWIN=_river_drift_module("adwin").ADWIN,
    KSWIN=_river_drift_module("kswin").KSWIN,
    PageHinkley=_river_drift_module("page_hinkley").PageHinkley,
)


class DriftParameterError(SurveillanceError, ValueError):
    """A drift detector or its calibration was given a parameter that makes no sense.

    A ValueError too, as river raises for bad parameters.
    """


class NumericDriftDetector(Protocol):
    """What the drift bank needs from a per-event numeric detector."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: float) -> Self: ...


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise DriftParameterError(message)


def _finite(x: float) -> bool:
    return math.isfinite(x)


class PageHinkleyDetector:
    """Page-Hinkley test on the mean (river.drift.PageHinkley), two-sided by default.

    `threshold` (lambda) is in the units of the values fed in; the drift bank feeds
    values standardised by the reference mean and SD, so it is in reference SDs.
    `delta` is the magnitude of change tolerated per observation, same units.
    """

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: Literal["up", "down", "both"] = "both",
    ) -> None:
        _check(min_instances >= 1, f"min_instances must be >= 1, got {min_instances}")
        _check(_finite(delta) and delta >= 0, f"delta must be finite and >= 0, got {delta}")
        _check(
            _finite(threshold) and threshold > 0,
            f"threshold must be finite and > 0, got {threshold}",
        )
        _check(0 < alpha <= 1, f"alpha (forgetting factor) must be in (0, 1], got {alpha}")
        _check(mode in ("up", "down", "both"), f"mode must be up, down or both, got {mode!r}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        self._detector: Any = drift.PageHinkley(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.alpha,
            mode=self.mode,
        )

    @property
    def drift_detected(self) -> bool:
        return bool(self._detector.drift_detected)

    def update(self, x: float) -> Self:
        self._detector.update(x)
        return self


class AdwinDetector:
    """ADWIN adaptive windowing (river.drift.ADWIN): detects a change in the mean.

    `delta` is the confidence parameter: smaller means fewer alarms and later detection.
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        _check(0 < delta < 1, f"delta must be in (0, 1), got {delta}")
        _check(clock >= 1, f"clock must be >= 1, got {clock}")
        _check(max_buckets >= 2, f"max_buckets must be >= 2, got {max_buckets}")
        _check(min_window_length >= 1, f"min_window_length must be >= 1, got {min_window_length}")
        _check(grace_period >= 1, f"grace_period must be >= 1, got {grace_period}")
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._reset()

    def _reset(self) -> None:
        self._detector: Any = drift.ADWIN(
            delta=self.delta,
            clock=self.clock,
            max_buckets=self.max_buckets,
            min_window_length=self.min_window_length,
            grace_period=self.grace_period,
        )

    @property
    def drift_detected(self) -> bool:
        return bool(self._detector.drift_detected)

    @property
    def width(self) -> int:
        """Current adaptive window length."""
        return int(self._detector.width)

    def update(self, x: float) -> Self:
        self._detector.update(x)
        return self


class KswinDetector:
    """Kolmogorov-Smirnov windowing (river.drift.KSWIN): detects a change in distribution.

    Costs one two-sample KS test per update once the window is full (~0.2 ms here), so
    it is meant for sampled or low-volume streams, not for every event of every feature.
    """

    def __init__(
        self,
        alpha: float = 0.005,
        window_size: int = 100,
        stat_size: int = 30,
        seed: int | None = None,
        window: Iterable[float] | None = None,
    ) -> None:
        _check(0 < alpha < 1, f"alpha must be in (0, 1), got {alpha}")
        _check(stat_size >= 1, f"stat_size must be >= 1, got {stat_size}")
        _check(
            window_size >= 2 * stat_size,
            f"window_size must be at least 2 * stat_size, got {window_size} and {stat_size}",
        )
        self.alpha = alpha
        self.window_size = window_size
        self.stat_size = stat_size
        self.seed = seed
        self._initial_window = list(window) if window is not None else None
        self._reset()

    def _reset(self) -> None:
        self._detector: Any = drift.KSWIN(
            alpha=self.alpha,
            window_size=self.window_size,
            stat_size=self.stat_size,
            seed=self.seed,
            window=self._initial_window,
        )

    @property
    def drift_detected(self) -> bool:
        return bool(self._detector.drift_detected)

    @property
    def p_value(self) -> float:
        """p-value of the last KS test (0 before the window is first full)."""
        return float(self._detector.p_value)

    def update(self, x: float) -> Self:
        self._detector.update(x)
        return self
