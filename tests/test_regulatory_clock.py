"""Due dates worked out by hand on a calendar (each expected date says how in a comment)."""

from __future__ import annotations

from datetime import date

import pytest

from surveillance.clinical.regulatory_clock import (
    Obligation,
    ObligationStatus,
    add_work_days,
    eu_obligations,
    obligations,
    status,
    statuses,
    us_federal_holidays,
    us_obligations,
)
from surveillance.contracts import Outcome

SERIOUS_INJURY = [
    Outcome.LIFE_THREATENING,
    Outcome.HOSPITALIZATION,
    Outcome.DISABILITY,
    Outcome.REQUIRED_INTERVENTION,
    Outcome.OTHER_SERIOUS,
]


def test_federal_holidays_2025_match_opm_list() -> None:
    # OPM's published 2025 Federal holidays.
    assert sorted(us_federal_holidays([2025])) == [
        date(2025, 1, 1),
        date(2025, 1, 20),
        date(2025, 2, 17),
        date(2025, 5, 26),
        date(2025, 6, 19),
        date(2025, 7, 4),
        date(2025, 9, 1),
        date(2025, 10, 13),
        date(2025, 11, 11),
        date(2025, 11, 27),
        date(2025, 12, 25),
    ]


def test_federal_holidays_weekend_dates_are_observed_on_friday_or_monday() -> None:
    # 2022: New Year's Day fell on a Saturday -> observed Fri 2021-12-31; Juneteenth on a
    # Sunday -> Mon 06-20; Christmas on a Sunday -> Mon 12-26 (OPM 2022 list).
    days = us_federal_holidays([2022])
    assert date(2021, 12, 31) in days
    assert date(2022, 1, 1) not in days
    assert date(2022, 6, 20) in days and date(2022, 6, 19) not in days
    assert date(2022, 12, 26) in days and date(2022, 12, 25) not in days
    # Juneteenth is a holiday from 2021 on only.
    assert date(2019, 6, 19) not in us_federal_holidays([2019])


@pytest.mark.parametrize(
    ("aware", "expected"),
    [
        # Friday 2025-03-07: work days Mon 10 .. Fri 14 are 1-5, Mon 17 .. Fri 21 are 6-10.
        (date(2025, 3, 7), date(2025, 3, 21)),
        # Saturday and Sunday awareness: the first work day is still Mon 10 -> Fri 21.
        (date(2025, 3, 8), date(2025, 3, 21)),
        (date(2025, 3, 9), date(2025, 3, 21)),
        # Monday 2025-03-10: Tue 11 .. Fri 14 are 1-4, Mon 17 .. Fri 21 are 5-9, Mon 24 is 10.
        (date(2025, 3, 10), date(2025, 3, 24)),
        # Monday 2025-01-06: Jan 7-10 are 1-4, 13-17 are 5-9, Mon 20 is MLK Day (skipped),
        # Tue 21 is 10.
        (date(2025, 1, 6), date(2025, 1, 21)),
        # Wed 2025-12-17: Dec 18,19 (1-2), 22,23,24 (3-5), 25 Christmas skipped, 26 (6),
        # 29,30,31 (7-9), Jan 1 2026 New Year's skipped, Fri Jan 2 2026 is 10.
        (date(2025, 12, 17), date(2026, 1, 2)),
    ],
)
def test_us_death_due_in_ten_work_days(aware: date, expected: date) -> None:
    result = us_obligations(Outcome.DEATH, aware)
    assert result == [
        Obligation("us_803", "fda", expected, "21 CFR 803.30(a)(1): death, 10 work days"),
        Obligation("us_803", "manufacturer", expected, "21 CFR 803.30(a)(1): death, 10 work days"),
    ]


def test_empty_holiday_calendar_gives_the_conservative_date() -> None:
    # Mon 2025-01-06 without holidays: Jan 7-10 (1-4), 13-17 (5-9), Mon 20 is 10.
    (fda, _) = us_obligations(Outcome.DEATH, date(2025, 1, 6), holidays=())
    assert fda.due == date(2025, 1, 20)


@pytest.mark.parametrize("outcome", SERIOUS_INJURY)
def test_us_serious_injury_goes_to_manufacturer_or_fda_when_unknown(outcome: Outcome) -> None:
    aware = date(2025, 3, 8)  # Saturday -> 10th work day Fri 2025-03-21 (as above)
    assert [(o.recipient, o.due) for o in us_obligations(outcome, aware)] == [
        ("manufacturer", date(2025, 3, 21))
    ]
    unknown = us_obligations(outcome, aware, manufacturer_known=False)
    assert [(o.recipient, o.due) for o in unknown] == [("fda", date(2025, 3, 21))]


def test_non_serious_opens_no_obligation() -> None:
    assert obligations(Outcome.NON_SERIOUS, date(2025, 3, 7)) == []


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        # Calendar days from Friday 2025-03-07; weekends count.
        (Outcome.DEATH, date(2025, 3, 17)),  # +10
        (Outcome.LIFE_THREATENING, date(2025, 3, 17)),  # +10, serious deterioration
        (Outcome.HOSPITALIZATION, date(2025, 3, 17)),  # +10
        (Outcome.DISABILITY, date(2025, 3, 17)),  # +10
        (Outcome.REQUIRED_INTERVENTION, date(2025, 3, 17)),  # +10
        (Outcome.OTHER_SERIOUS, date(2025, 3, 22)),  # +15, a Saturday: still the due day
    ],
)
def test_eu_mdr_limits(outcome: Outcome, expected: date) -> None:
    (only,) = eu_obligations(outcome, date(2025, 3, 7))
    assert (only.regime, only.recipient, only.due) == ("eu_mdr", "competent_authority", expected)


def test_eu_public_health_threat_and_anticipated_deterioration() -> None:
    aware = date(2025, 3, 8)  # Saturday
    # Public health threat: +2 calendar days -> Mon 2025-03-10, whatever the outcome.
    for outcome in (Outcome.DEATH, Outcome.OTHER_SERIOUS, Outcome.NON_SERIOUS):
        (threat,) = eu_obligations(outcome, aware, public_health_threat=True)
        assert threat.due == date(2025, 3, 10)
    # An anticipated deterioration is an "other serious incident": +15 -> Sun 2025-03-23.
    (anticipated,) = eu_obligations(Outcome.HOSPITALIZATION, aware, anticipated=True)
    assert anticipated.due == date(2025, 3, 23)
    # Death stays at 10 days even when flagged anticipated: +10 -> Tue 2025-03-18.
    (death,) = eu_obligations(Outcome.DEATH, aware, anticipated=True)
    assert death.due == date(2025, 3, 18)


def test_obligations_lists_us_then_eu() -> None:
    keys = [o.key for o in obligations(Outcome.DEATH, date(2025, 3, 7))]
    assert keys == ["us_803:fda", "us_803:manufacturer", "eu_mdr:competent_authority"]


def test_status_around_the_due_date() -> None:
    ob = Obligation("us_803", "fda", date(2025, 1, 21), "x")
    assert status(ob, date(2025, 1, 18)) is ObligationStatus.OPEN  # 3 days left
    assert status(ob, date(2025, 1, 19)) is ObligationStatus.DUE_SOON  # 2 days left
    assert status(ob, date(2025, 1, 21)) is ObligationStatus.DUE_SOON  # due day, still in time
    assert status(ob, date(2025, 1, 22)) is ObligationStatus.OVERDUE
    assert status(ob, date(2025, 1, 22), submitted=True) is ObligationStatus.DONE
    both = [ob, Obligation("us_803", "manufacturer", date(2025, 1, 21), "x")]
    assert statuses(both, date(2025, 1, 30), {"us_803:fda"}) == {
        "us_803:fda": ObligationStatus.DONE,
        "us_803:manufacturer": ObligationStatus.OVERDUE,
    }


def test_add_work_days_rejects_negative_and_zero_is_start() -> None:
    assert add_work_days(date(2025, 3, 8), 0, ()) == date(2025, 3, 8)
    with pytest.raises(ValueError):
        add_work_days(date(2025, 3, 8), -1, ())
