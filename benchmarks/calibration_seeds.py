"""A tool's total drift false-alarm rate across base seeds: a seed per calibration
against one seed shared by all (`stats.drift_calibration.calibration_seed`).

The calibrations are the production configuration's window calibrations over
`calibration_set.py`'s 90-day backlog (the worker's `DriftBankConfig`, 4 tools), captured
with each one's identity. For each base seed b = 0..B-1 each is calibrated twice: with its
own seed `calibration_seed(b, identity)` ("own") and with the seed b itself, as every
calibration had before ("shared"). Each threshold set's realized false-alarm rate is
measured on a pool of fresh stable windows of that calibration's null, drawn once from a
seed apart from every calibration seed (the same pool for every b and both modes, so the
pool's own noise is a fixed offset per calibration, not a spread between seeds), counted
as the search counts it (any test crossing; with the moved-mass gate where the
calibration has one).

Reported, per tool and for all tools: the sum over features of the realized rates, its
mean (against the sum of the aims) and its variance across b, and the variance ratio
Var(sum) / sum of Var(each) (1 for independent calibrations). Tests (scipy): for each
mode a permutation test of independence (each calibration's b-values re-paired at random
between features, `scipy.stats.permutation_test`, pairings: p small when features'
rates move together), and the F test of the shared mode's variance of the sum against
the own seeds'. Per calibration: the mean realized rate over b against the aim, with a
one-sided 95% upper bound over seeds (Student t: the seeds' spread only) and the pool's
Clopper-Pearson bound (its noise only, `pool` windows), and a t test over calibrations
with the mean's 95% CI and the pooled ratio (sum of rates / sum of aims).

`--first-seed` runs the base seeds first-seed .. first-seed + seeds - 1 (a run apart from
an earlier one's seeds), `--fresh-base` another pool; the pool is simulated in chunks of
POOL_CHUNK windows (tens of millions without holding their counts).

    nice -n 19 .venv/bin/python benchmarks/calibration_seeds.py --seeds 30 --jobs 2 \\
        --inputs /tmp/calibration-seeds-90.pkl   # --save FILE to capture first
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
from scipy import stats

import surveillance.stats.drift_categorical_feature as categorical
import surveillance.stats.drift_numeric_feature as numeric
from surveillance.stats.drift_calibration import (
    GATED_AIM,
    calibrate_window_thresholds,
    calibration_seed,
    simulate_windows,
    total_variation_rows,
    window_statistics,
)
from surveillance.stats.window_bound import _alarms
from surveillance.stats.window_shortcuts import distinct_rows

#: Base of the fresh pools' seeds: `calibration_seed` of it is apart from every
#: calibration's seed (another base).
FRESH_BASE = 987_654_321
#: Fresh windows simulated at a time (each chunk its own seed; the first chunk's is the
#: unchunked pool's): a pool of tens of millions without holding its counts.
POOL_CHUNK = 1_000_000
Call = tuple[tuple[str | None, ...], tuple[Any, ...], dict[str, Any]]


def capture(days: int) -> list[Call]:
    """The window calibrations of the engine over `days` days, each with its identity."""
    from calibration_set import capture as capture_calls  # this directory

    identities: dict[int, tuple[str | None, ...]] = {}

    def recording(base: int, *identity: str | None) -> int:
        seed = calibration_seed(base, *identity)
        identities[seed] = identity
        return seed

    with patch.object(numeric, "calibration_seed", recording), \
            patch.object(categorical, "calibration_seed", recording):
        calls = capture_calls(days)
    return [(identities[kw["seed"]], args, kw) for kind, args, kw in calls if kind == "window"]


def _without_identities(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Call]:
    """`calibration_set.py --save` inputs (no identities): each window calibration named
    by its bank (the reference's window sizes: one bank per tool and role, in order) and
    its place; its own seed is then `calibration_seed(b, bank, place)`, a seed as apart
    from the others' as the real identity's."""
    banks: dict[tuple[int, ...], str] = {}
    out: list[Call] = []
    for i, (kind, args, kw) in enumerate(calls):
        if kind == "window":
            bank = banks.setdefault(tuple(kw["window_sizes"] or ()), f"bank{len(banks)}")
            out.append(((bank, f"call{i}"), args, kw))
    return out


def _aim(kw: dict[str, Any], rate: float) -> float:
    return rate * GATED_AIM if kw.get("min_total_variation", 0.0) > 0 else rate


def _pool_statistics(call: Call, pool: int, fresh_base: int) -> tuple[
        dict[str, np.ndarray], np.ndarray | None]:
    """The fresh pool's statistics (and gate) of one calibration's null, in chunks of
    POOL_CHUNK windows: chunk i's seed is `calibration_seed(fresh_base, *identity,
    "fresh")` for i = 0 (as unchunked), with str(i) appended after."""
    identity, args, kw = call
    reference, events_per_window, _ = args
    tests = tuple(kw["tests"])
    gate_level = kw.get("min_total_variation", 0.0)
    parts: list[dict[str, np.ndarray]] = []
    gates: list[np.ndarray] = []
    for i, start in enumerate(range(0, pool, POOL_CHUNK)):
        extra = (str(i),) if i else ()
        windows = simulate_windows(reference, events_per_window, min(POOL_CHUNK, pool - start),
                                   calibration_seed(fresh_base, *identity, "fresh", *extra),
                                   kw["min_window_events"], kw["window_sizes"])
        rows, back = distinct_rows(windows)
        parts.append({t: v[back] for t, v in window_statistics(reference, rows, tests).items()})
        if gate_level > 0:
            gates.append(total_variation_rows(reference, rows)[back] >= gate_level)
    statistics = {t: np.concatenate([p[t] for p in parts]) for t in tests}
    return statistics, np.concatenate(gates) if gates else None


def measure(call: Call, seeds: int, pool: int, own_only: bool = False, first_seed: int = 0,
            fresh_base: int = FRESH_BASE) -> dict[str, Any]:
    """One calibration's realized rates: rates[mode][i] on its fresh pool, for the base
    seeds b = first_seed + i."""
    identity, args, kw = call
    reference, events_per_window, rate = args
    tests = tuple(kw["tests"])
    statistics, gate = _pool_statistics(call, pool, fresh_base)
    rates: dict[str, list[float]] = {"own": [], "shared": []}
    for b in range(first_seed, first_seed + seeds):
        modes = [("own", calibration_seed(b, *identity)), ("shared", b)]
        for mode, seed in modes[:1] if own_only else modes:
            t = calibrate_window_thresholds(reference, events_per_window, rate,
                                            **{**kw, "seed": seed})
            chosen = {"psi": t.psi, "jensen_shannon": t.jensen_shannon,
                      "chi_square": t.chi_square_p}
            alarms = _alarms(statistics, {k: chosen[k] for k in tests}, gate)
            rates[mode].append(float(alarms.mean()))
    return {"identity": identity, "aim": _aim(kw, rate), "tests": tests, "pool": pool,
            "rates": rates}


def _var_ratio(matrix: np.ndarray) -> float:
    """Var(sum over rows) / sum of each row's Var (columns: base seeds)."""
    return float(matrix.sum(axis=0).var(ddof=1) / matrix.var(axis=1, ddof=1).sum())


def _independence_p(matrix: np.ndarray) -> float:
    """Permutation p of Var(sum) at least as large with the rows re-paired at random."""
    result = stats.permutation_test(
        tuple(matrix), lambda *rows, axis=-1: np.var(np.sum(rows, axis=0), axis=axis, ddof=1),
        permutation_type="pairings", alternative="greater", n_resamples=9999,
        vectorized=True, random_state=0)
    return float(result.pvalue)


def report(results: list[dict[str, Any]], seeds: int) -> None:
    tools = sorted({r["identity"][0] for r in results})
    print(f"{len(results)} window calibrations, {seeds} base seeds, "
          f"fresh pool {results[0]['pool']:,} windows each")
    groups = [(tool, [r for r in results if r["identity"][0] == tool]) for tool in tools]
    groups.append(("all tools", results))
    numeric_psi = [r for r in results if r["tests"] == ("psi",)]
    groups.append(("numeric PSI", numeric_psi))
    for name, members in groups:
        if len(members) < 2:
            continue
        aim = sum(r["aim"] for r in members)
        line = [f"{name} ({len(members)} calibrations):"]
        variances = {}
        for mode in ("own", "shared"):
            m = np.array([r["rates"][mode] for r in members])
            total = m.sum(axis=0)
            variances[mode] = total.var(ddof=1)
            line.append(
                f"  {mode}: sum/aim mean {total.mean() / aim:.3f} (min {total.min() / aim:.2f}, "
                f"max {total.max() / aim:.2f}, seed 0 {total[0] / aim:.2f}), "
                f"SD/aim {total.std(ddof=1) / aim:.3f}, Var(sum)/sum Var {_var_ratio(m):.2f}, "
                f"independence p {_independence_p(m):.4f}")
        ratio = variances["shared"] / variances["own"]
        line.append(f"  Var shared / Var own {ratio:.2f}, F test p "
                    f"{stats.f.sf(ratio, seeds - 1, seeds - 1):.4f}")
        print("\n".join(line))
    report_rates(results, seeds)


def report_rates(results: list[dict[str, Any]], seeds: int) -> None:
    print("per calibration (own seeds): mean rate / aim, t 95% upper bound, "
          "pool Clopper-Pearson 95% upper bound")
    worst = 0.0
    for r in results:
        own = np.array(r["rates"]["own"])
        mean = own.mean()
        upper_t = mean + stats.t.ppf(0.95, seeds - 1) * own.std(ddof=1) / np.sqrt(seeds)
        # The pool is one sample for every seed: its noise is a binomial count of `pool`
        # windows (not seeds x pool), about the seeds' mean rate.
        k = round(float(mean) * r["pool"])
        upper_cp = stats.binomtest(k, r["pool"]).proportion_ci(0.90).high
        worst = max(worst, mean / r["aim"])
        print(f"  {'/'.join(str(p) for p in r['identity'])}: {mean / r['aim']:.3f} "
              f"(t {upper_t / r['aim']:.3f}, CP {upper_cp / r['aim']:.3f})")
    means = np.array([np.mean(r["rates"]["own"]) / r["aim"] for r in results])
    t_all = stats.ttest_1samp(means, 1.0, alternative="greater")
    # Each calibration's mean has its own pool and seeds: independent between calibrations,
    # each unbiased for its expected rate, so this t test carries both noises.
    low, high = stats.ttest_1samp(means, 1.0).confidence_interval(0.95)
    pooled = sum(np.mean(r["rates"]["own"]) for r in results) / sum(r["aim"] for r in results)
    print(f"calibrations' mean rate / aim: mean {means.mean():.3f} (95% CI {low:.3f}-{high:.3f}), "
          f"max {worst:.3f}; one-sided t (over calibrations) that the mean is above 1: "
          f"p {t_all.pvalue:.4f}; pooled (sum of rates / sum of aims) {pooled:.3f}")


def _measure(job: tuple[Call, int, int, bool, int, int]) -> dict[str, Any]:
    return measure(*job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--inputs", type=Path)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="base seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--fresh-base", type=int, default=FRESH_BASE,
                        help="base of the fresh pools' seeds (another pool)")
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", choices=("numeric", "categorical", "all"), default="all")
    parser.add_argument("--own-only", action="store_true",
                        help="own seeds only (the per-calibration rates; no variance test)")
    parser.add_argument("--results", type=Path, help="keep the measured rates here")
    parser.add_argument("--report", type=Path, help="only report the rates kept in this file")
    args = parser.parse_args()
    if args.report:
        kept = pickle.loads(args.report.read_bytes())
        report(kept, len(kept[0]["rates"]["own"]))
        return
    if args.save:
        calls = capture(args.days)
        args.save.write_bytes(pickle.dumps(calls, pickle.HIGHEST_PROTOCOL))
        print(f"saved {len(calls)} window calibrations to {args.save}")
    elif args.inputs:
        calls = pickle.loads(args.inputs.read_bytes())
        if calls and isinstance(calls[0][0], str):
            calls = _without_identities(calls)
    else:
        raise SystemExit("give --save FILE (capture, then run) or --inputs FILE")
    if args.only != "all":
        calls = [c for c in calls if (tuple(c[2]["tests"]) == ("psi",)) == (args.only == "numeric")]
    started = time.time()
    jobs = [(call, args.seeds, args.pool, args.own_only, args.first_seed, args.fresh_base)
            for call in calls]
    results = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        # Each calibration's line as it ends (a long run's partial answer).
        for r in pool.imap_unordered(_measure, jobs, chunksize=1):
            results.append(r)
            own = np.array(r["rates"]["own"])
            print(f"  done {'/'.join(str(p) for p in r['identity'])}: mean rate / aim "
                  f"{own.mean() / r['aim']:.3f} ({time.time() - started:.0f} s)", flush=True)
            if args.results:
                args.results.write_bytes(pickle.dumps(results, pickle.HIGHEST_PROTOCOL))
    if args.own_only:
        report_rates(results, args.seeds)
    else:
        report(results, args.seeds)
    print(f"wall {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
