"""CPU of one set of drift calibrations, and a digest of their thresholds.

The set is every Monte Carlo calibration the engine asks for over `throughput.py`'s
backlog (90 days: 35 window calibrations and 11 Page-Hinkley ones, the 4 tools'
references). `--save FILE` runs the engine in process over the simulator's backlog and
keeps the calibrations' inputs (arguments as the cache passes them); `--inputs FILE`
reads them back. Each run then computes every calibration in this fresh process and
prints the CPU (`time.process_time`) by kind, the imports apart, and the SHA-256 of all
thresholds in order: equal digests on two trees mean the very same thresholds.

    PYTHONHASHSEED=0 benchmarks/calibration_set.py --save /tmp/calibrations-90.pkl
    PYTHONPATH=<other tree> benchmarks/calibration_set.py --inputs /tmp/calibrations-90.pkl

Ends with `calibrations C s CPU (windows W, Page-Hinkley P); sha256 H`.
"""

from __future__ import annotations

import time

STARTED = time.process_time()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import surveillance.stats.drift_calibration_cache as cache  # noqa: E402

Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def capture(days: int) -> list[Call]:
    """The calibrations' inputs of the engine over the simulator's `days`-day backlog."""
    from unittest.mock import patch

    from surveillance.engine import collector
    from surveillance.engine.config import EngineConfig
    from surveillance.engine.local import LocalPipeline
    from surveillance.simulate import Faults, Scenario, past_start, simulate

    calls: list[Call] = []

    def kept(kind: str, compute: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            calls.append((kind, args, kwargs))
            return compute(*args, **kwargs)
        return run

    start = past_start(days, datetime.now(UTC).date())
    events, _ = simulate(days=days, seed=7, start=start, scenario=Scenario(), faults=Faults())
    collector.for_long_lived_state()
    with patch.object(cache, "calibrate_window_thresholds",
                      kept("window", cache.calibrate_window_thresholds)), \
            patch.object(cache, "calibrate_page_hinkley",
                         kept("page_hinkley", cache.calibrate_page_hinkley)):
        pipeline = LocalPipeline(EngineConfig.plain(4))
        for event in events:
            pipeline.feed(event)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--save", type=Path, help="capture the inputs into this file first")
    parser.add_argument("--inputs", type=Path, help="inputs captured by --save")
    args = parser.parse_args()
    if args.save:
        calls = capture(args.days)
        args.save.write_bytes(pickle.dumps(calls, pickle.HIGHEST_PROTOCOL))
        print(f"saved {len(calls)} calibrations' inputs to {args.save}")
    elif args.inputs:
        calls = pickle.loads(args.inputs.read_bytes())
    else:
        raise SystemExit("give --save FILE (capture, then run) or --inputs FILE")
    imported = time.process_time() - STARTED
    compute = {"window": cache.calibrate_window_thresholds,
               "page_hinkley": cache.calibrate_page_hinkley}
    spent = dict.fromkeys(compute, 0.0)
    counts = dict.fromkeys(compute, 0)
    digest = hashlib.sha256()
    for kind, positional, keywords in calls:
        started = time.process_time()
        thresholds = compute[kind](*positional, **keywords)
        spent[kind] += time.process_time() - started
        counts[kind] += 1
        digest.update(repr(thresholds).encode())
    print(f"{counts['window']} window and {counts['page_hinkley']} Page-Hinkley calibrations; "
          f"imports {imported:.2f} s CPU before them; load average "
          f"{os.getloadavg()[0]:.2f} (1 min)")
    print(f"calibrations {sum(spent.values()):.2f} s CPU (windows {spent['window']:.2f}, "
          f"Page-Hinkley {spent['page_hinkley']:.2f}); sha256 {digest.hexdigest()}")


if __name__ == "__main__":
    main()
