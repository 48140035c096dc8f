"""What a drift verdict says: summaries, what moved, where it concentrates, likely cause.

Every piece of text built from the data (category names, sites) is clipped, so that a
verdict about a 256-character protocol name or forty long site names still makes an
alert within the `Alert` contract's limits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import numpy as np

from surveillance.stats.drift_features import FeatureValue
from surveillance.stats.psi import FloatArray

Summary = tuple[tuple[str, float], ...]
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TOP_CATEGORIES = 5
#: A site's window is compared with the site's own reference only from this many events.
MIN_SITE_EVENTS = 10
#: Longest category name quoted in alert text (longer ones end in an ellipsis).
NAME_LIMIT = 48
#: Parts of a "likely cause" hint, at most.
HINT_PARTS = 3


def clip(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its start and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(name: str) -> str:
    """A category name as alert text shows it: its repr (escapes shown, as ever) in at
    most `NAME_LIMIT` characters, closing quote kept."""
    text = repr(name)
    if len(text) <= NAME_LIMIT:
        return text
    return clip(text[:-1], NAME_LIMIT - 1) + text[-1]


def numeric_summary(values: Sequence[float] | FloatArray) -> Summary:
    arr = np.asarray(values, dtype=np.float64)
    present = arr[~np.isnan(arr)]
    missing = ("missing", float(np.isnan(arr).mean()) if arr.size else 0.0)
    if present.size == 0:
        return (missing,)
    qs = np.quantile(present, QUANTILES)
    return (
        ("mean", float(present.mean())),
        *((f"p{round(q * 100):02d}", float(v)) for q, v in zip(QUANTILES, qs, strict=True)),
        missing,
    )


def category_summary(labels: Sequence[str], counts: Sequence[float]) -> Summary:
    total = float(sum(counts))
    ranked = sorted(zip(labels, counts, strict=True), key=lambda kv: -kv[1])
    return tuple((k, v / total) for k, v in ranked[:TOP_CATEGORIES] if total > 0)


def total_variation(reference: FloatArray, current: FloatArray) -> float:
    """Total variation distance of two count vectors on the same axis."""
    return float(0.5 * np.abs(reference / reference.sum() - current / current.sum()).sum())


def concentrated(by_site: Sequence[tuple[str, float]], floor: float) -> str | None:
    """The site whose shift is at least `floor` and 3 times any other site's, else None.

    Three times, not twice: with a shift spread evenly over two sites, sampling noise
    alone makes one site's daily distance twice the other's now and then."""
    ranked = sorted(by_site, key=lambda kv: -kv[1])
    if not ranked or ranked[0][1] < max(floor, 1e-12):
        return None
    if len(ranked) > 1 and ranked[0][1] < 3 * ranked[1][1]:
        return None
    return ranked[0][0]


def _g(x: float) -> str:
    return f"{x:.4g}"


def numeric_change(reference: FloatArray, current: FloatArray, unit: str) -> str:
    """What moved, in the feature's units: mean and median, or the missing share."""
    ref = reference[~np.isnan(reference)]
    cur = current[~np.isnan(current)]
    if cur.size == 0 or ref.size == 0:
        return f"missing {np.isnan(reference).mean():.0%} -> {np.isnan(current).mean():.0%}"
    return (
        f"mean {_g(ref.mean())} -> {_g(cur.mean())}{unit} "
        f"(median {_g(float(np.median(ref)))} -> {_g(float(np.median(cur)))}{unit})"
    )


def category_change(ref_counts: dict[str, int], current: Sequence[FeatureValue]) -> str:
    """The two categories whose share moved most, as 'X' a% -> b% of studies."""
    cur_counts: dict[str, int] = {}
    for c in current:
        cur_counts[str(c)] = cur_counts.get(str(c), 0) + 1
    n_ref, n_cur = sum(ref_counts.values()), max(len(current), 1)
    keys = set(ref_counts) | set(cur_counts)
    moves = sorted(
        ((ref_counts.get(k, 0) / n_ref, cur_counts.get(k, 0) / n_cur, k) for k in keys),
        key=lambda m: (-abs(m[1] - m[0]), m[2]),
    )
    parts = [f"{quoted(k)} {a:.0%} -> {b:.0%}" for a, b, k in moves[:2]]
    return "share " + ", ".join(parts) + " of studies"


def cause_hint(
    news: Sequence[tuple[str, str, datetime]], shifted: Collection[str]
) -> str | None:
    """Plausible causes of a shift: categories first seen lately (feature, category, when)
    and cause features whose episode opened in the same window; None when there are none."""
    parts = [
        f"new {feature} {quoted(category)} first seen {seen:%Y-%m-%d %H:%M} UTC"
        for feature, category, seen in news
    ]
    parts += [f"{name} shifted in the same window" for name in sorted(shifted)]
    return "; ".join(parts[:HINT_PARTS]) if parts else None
