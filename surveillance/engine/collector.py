"""Python's cyclic garbage collector, set for a process that keeps large state.

The engine allocates a few hundred objects per event and keeps its state (tables, windows,
drift banks) for long: with Python's default threshold (700) the young generation is
collected every few events and the older ones often, each pass re-scanning the live state.
Collecting every 50,000 allocations cut the worker's CPU per input event by about 10%
(578 -> 519 µs, 2 A/B pairs of `benchmarks/throughput.py --days 30`, measured on the
`livepath` branch's worker). State is freed by reference counting as before; only cycles
wait longer.
"""

from __future__ import annotations

import gc


def for_long_lived_state() -> None:
    gc.set_threshold(50_000, 20, 20)
