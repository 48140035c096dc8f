"""Regulatory reporting clocks for an adverse-event report: who must be told, by when.

US, 21 CFR 803.30 (user facilities): a death is reported to FDA *and* the manufacturer,
a serious injury to the manufacturer (to FDA when the manufacturer is unknown), both
within 10 work days of becoming aware. 21 CFR 803.3 defines a work day as Monday to
Friday except Federal holidays, so by default the clock skips weekends *and* the Federal
holidays of 5 U.S.C. 6103 on their observed dates (`us_federal_holidays`). Pass another
calendar as `holidays` (an empty one gives the conservative, earlier date). Day 0 is the
day of awareness; the due date is the 10th work day after it.

EU, MDR Article 87 (the manufacturer reports to the competent authority, counted in
calendar days from awareness): serious public health threat 2 days (87(4)); death or
unanticipated serious deterioration in state of health 10 days (87(5)); any other
serious incident 15 days (87(3)). A facility's own clock for telling the manufacturer
is shorter in practice; these are the outer limits the report must meet.

Mapping of `Outcome` (FDA 3500A B2) to the classes:

============================  ======================  ==================================
Outcome                       US 803 class            EU MDR class
============================  ======================  ==================================
death                         death                   death (10 d)
life_threatening              serious injury          serious deterioration (10 d)
hospitalization               serious injury          serious deterioration (10 d)
disability                    serious injury          serious deterioration (10 d)
required_intervention         serious injury          serious deterioration (10 d)
other_serious                 serious injury          other serious incident (15 d)
non_serious                   not reportable          not reportable
============================  ======================  ==================================

The form does not tell whether a deterioration was anticipated, so it is treated as
unanticipated (the shorter clock) unless the caller says `anticipated=True`, which moves
those outcomes to the 15-day class. A serious public health threat is not an `Outcome`;
the caller flags it with `public_health_threat=True` (2 days, whatever the outcome).
"""

from __future__ import annotations

import calendar
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Literal

from surveillance.contracts import Outcome

Regime = Literal["us_803", "eu_mdr"]
Recipient = Literal["fda", "manufacturer", "competent_authority"]

US_WORK_DAYS = 10
EU_PUBLIC_HEALTH_THREAT_DAYS = 2
EU_DEATH_OR_DETERIORATION_DAYS = 10
EU_OTHER_SERIOUS_DAYS = 15
#: An obligation is `due_soon` when its due date is this many calendar days away or fewer.
DUE_SOON_DAYS = 2

_SERIOUS_DETERIORATION = frozenset(
    {
        Outcome.LIFE_THREATENING,
        Outcome.HOSPITALIZATION,
        Outcome.DISABILITY,
        Outcome.REQUIRED_INTERVENTION,
    }
)


class ObligationStatus(StrEnum):
    OPEN = "open"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    DONE = "done"


@dataclass(frozen=True)
class Obligation:
    regime: Regime
    recipient: Recipient
    due: date
    basis: str

    @property
    def key(self) -> str:
        """Stable name of this obligation within one report, e.g. `us_803:fda`."""
        return f"{self.regime}:{self.recipient}"


def is_serious(outcome: Outcome) -> bool:
    return outcome is not Outcome.NON_SERIOUS


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    # Executive Order 11582: a Saturday holiday is observed on Friday, a Sunday one on Monday.
    if day.weekday() == calendar.SATURDAY:
        return day - timedelta(days=1)
    if day.weekday() == calendar.SUNDAY:
        return day + timedelta(days=1)
    return day


def us_federal_holidays(years: Iterable[int]) -> frozenset[date]:
    """Observed Federal holidays (5 U.S.C. 6103) of the given years.

    The observed date of New Year's Day can fall on December 31 of the year before.
    """
    days: set[date] = set()
    for y in years:
        fixed = [date(y, 1, 1), date(y, 7, 4), date(y, 11, 11), date(y, 12, 25)]
        if y >= 2021:
            fixed.append(date(y, 6, 19))  # Juneteenth, a Federal holiday since 2021
        days.update(_observed(d) for d in fixed)
        days.update(
            {
                _nth_weekday(y, 1, calendar.MONDAY, 3),  # Birthday of Martin Luther King, Jr.
                _nth_weekday(y, 2, calendar.MONDAY, 3),  # Washington's Birthday
                _last_weekday(y, 5, calendar.MONDAY),  # Memorial Day
                _nth_weekday(y, 9, calendar.MONDAY, 1),  # Labor Day
                _nth_weekday(y, 10, calendar.MONDAY, 2),  # Columbus Day
                _nth_weekday(y, 11, calendar.THURSDAY, 4),  # Thanksgiving Day
            }
        )
    return frozenset(days)


def add_work_days(start: date, n: int, holidays: Collection[date]) -> date:
    """The n-th Monday-to-Friday non-holiday after `start` (`start` itself is day 0)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    day = start
    counted = 0
    while counted < n:
        day += timedelta(days=1)
        if day.weekday() < calendar.SATURDAY and day not in holidays:
            counted += 1
    return day


def us_obligations(
    outcome: Outcome,
    aware: date,
    *,
    manufacturer_known: bool = True,
    holidays: Collection[date] | None = None,
) -> list[Obligation]:
    """21 CFR 803.30 obligations of a user facility for one report."""
    if not is_serious(outcome):
        return []
    if holidays is None:
        # The 10 work days end at most ~3 weeks later: the next year's holidays matter
        # for awareness in late December.
        holidays = us_federal_holidays((aware.year, aware.year + 1))
    due = add_work_days(aware, US_WORK_DAYS, holidays)
    if outcome is Outcome.DEATH:
        basis = "21 CFR 803.30(a)(1): death, 10 work days"
        return [
            Obligation("us_803", "fda", due, basis),
            Obligation("us_803", "manufacturer", due, basis),
        ]
    if manufacturer_known:
        return [
            Obligation(
                "us_803", "manufacturer", due, "21 CFR 803.30(a)(2): serious injury, 10 work days"
            )
        ]
    return [
        Obligation(
            "us_803",
            "fda",
            due,
            "21 CFR 803.30(a)(2): serious injury, manufacturer unknown, 10 work days",
        )
    ]


def eu_obligations(
    outcome: Outcome,
    aware: date,
    *,
    public_health_threat: bool = False,
    anticipated: bool = False,
) -> list[Obligation]:
    """EU MDR Article 87 reporting limit for one report (calendar days from awareness)."""
    if public_health_threat:
        days, basis = EU_PUBLIC_HEALTH_THREAT_DAYS, "MDR 87(4): serious public health threat"
    elif outcome is Outcome.DEATH or (outcome in _SERIOUS_DETERIORATION and not anticipated):
        days = EU_DEATH_OR_DETERIORATION_DAYS
        basis = "MDR 87(5): death or unanticipated serious deterioration in state of health"
    elif is_serious(outcome):
        days, basis = EU_OTHER_SERIOUS_DAYS, "MDR 87(3): serious incident"
    else:
        return []
    due = aware + timedelta(days=days)
    return [Obligation("eu_mdr", "competent_authority", due, f"{basis}, {days} days")]


def obligations(
    outcome: Outcome,
    aware: date,
    *,
    manufacturer_known: bool = True,
    public_health_threat: bool = False,
    anticipated: bool = False,
    holidays: Collection[date] | None = None,
) -> list[Obligation]:
    """Every obligation (US then EU) a report with this outcome opens."""
    return [
        *us_obligations(outcome, aware, manufacturer_known=manufacturer_known, holidays=holidays),
        *eu_obligations(
            outcome, aware, public_health_threat=public_health_threat, anticipated=anticipated
        ),
    ]


def status(obligation: Obligation, today: date, submitted: bool = False) -> ObligationStatus:
    """Status on `today`: the due date itself is still in time; the day after is overdue."""
    if submitted:
        return ObligationStatus.DONE
    days_left = (obligation.due - today).days
    if days_left < 0:
        return ObligationStatus.OVERDUE
    if days_left <= DUE_SOON_DAYS:
        return ObligationStatus.DUE_SOON
    return ObligationStatus.OPEN


def statuses(
    items: Iterable[Obligation], today: date, submitted: Collection[str] = ()
) -> dict[str, ObligationStatus]:
    """Status of each obligation by key; `submitted` holds the keys already reported."""
    return {o.key: status(o, today, o.key in submitted) for o in items}
