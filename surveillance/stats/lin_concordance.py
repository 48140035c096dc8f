"""Lin's concordance correlation coefficient of two measurement methods, with its interval.

    rho_c = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)

with moments divided by n (Lin 1989, Biometrics 45:255-268). It is Pearson's r times the
bias-correction factor C_b <= 1, which falls with a location or scale shift between the
methods. The interval transforms rho_c by z = atanh(rho_c), whose variance is (Lin 1989,
as corrected in Lin 2000, Biometrics 56:324-325)

    var z = [ (1 - r^2) rho_c^2 / ((1 - rho_c^2) r^2)
              + 2 rho_c^3 (1 - rho_c) u^2 / (r (1 - rho_c^2)^2)
              - rho_c^4 u^4 / (2 r^2 (1 - rho_c^2)^2) ] / (n - 2),

u = (mean_x - mean_y) / sqrt(s_x s_y), and back-transforms z -/+ z_(1-alpha/2) sqrt(var z).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from surveillance.stats.bland_altman import Limit, differences
from surveillance.stats.intervals import StatsParameterError, two_sided_z


def lin_ccc(ai: Sequence[float], reference: Sequence[float], confidence: float = 0.95) -> Limit:
    """Lin's concordance of `ai` with `reference` and its interval; needs 4+ pairs."""
    differences(ai, reference)  # shape and finiteness checks
    z_crit = two_sided_z(confidence)
    x = np.asarray(ai, dtype=float)
    y = np.asarray(reference, dtype=float)
    n = int(x.size)
    if n < 4:
        raise StatsParameterError(f"Lin's concordance needs at least 4 pairs, got {n}")
    sxx = float(x.var())
    syy = float(y.var())
    if sxx == 0.0 or syy == 0.0:
        raise StatsParameterError(
            "Lin's concordance is undefined when one method gives the same value every time"
        )
    sxy = float(((x - x.mean()) * (y - y.mean())).mean())
    shift = float(x.mean() - y.mean())
    rho_c = 2.0 * sxy / (sxx + syy + shift**2)
    r = sxy / math.sqrt(sxx * syy)
    if abs(rho_c) >= 1.0 - 1e-12:
        return Limit(rho_c, rho_c, rho_c)  # exact agreement: no sampling spread left
    if r == 0.0:
        raise StatsParameterError("Lin's interval is undefined for uncorrelated methods")
    u2 = shift**2 / math.sqrt(sxx * syy)
    one_minus = 1.0 - rho_c**2
    var_z = (
        (1.0 - r**2) * rho_c**2 / (one_minus * r**2)
        + 2.0 * rho_c**3 * (1.0 - rho_c) * u2 / (r * one_minus**2)
        - rho_c**4 * u2**2 / (2.0 * r**2 * one_minus**2)
    ) / (n - 2)
    z = math.atanh(rho_c)
    half = z_crit * math.sqrt(max(var_z, 0.0))
    return Limit(rho_c, math.tanh(z - half), math.tanh(z + half))
