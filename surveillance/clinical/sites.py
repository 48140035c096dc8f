"""The all-sites key, and the site a case is counted under.

The monitor keys its figures over all sites "all" (in the snapshots, alerts, metrics and
store as well). A hospital may call a site `all`: its cases are then counted under
"site:all", so that no site's figures merge with the all-sites ones (a case there would
count twice in them). The escape is applied once, where the join makes the case.
"""

from __future__ import annotations

ALL_SITES = "all"
SITE_ESCAPE = "site:"
_SITE_ID_MAX = 128  # the contracts' `Id`


def case_site(site: str) -> str:
    """`site`, unless it reads as the all-sites key or an escaped one: one prefix more.

    Only ids of the form ("site:")^k "all" change, so no two sites meet. The one such id
    too long to take another prefix (128 characters) stays as it is: it then shares its
    per-site figures with the id one prefix shorter, never the all-sites ones.
    """
    rest = site
    while rest.startswith(SITE_ESCAPE):
        rest = rest[len(SITE_ESCAPE):]
    if rest != ALL_SITES or len(site) + len(SITE_ESCAPE) > _SITE_ID_MAX:
        return site
    return SITE_ESCAPE + site
