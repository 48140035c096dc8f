"""What the pages show for each coded value of a report (the form's choices, the listing)."""

from __future__ import annotations

from surveillance.contracts import DiscordanceType, Label, Outcome, Sex

OUTCOME_LABELS = {
    Outcome.DEATH: "Death",
    Outcome.LIFE_THREATENING: "Life-threatening",
    Outcome.HOSPITALIZATION: "Hospitalization (initial or prolonged)",
    Outcome.DISABILITY: "Disability or permanent damage",
    Outcome.REQUIRED_INTERVENTION: "Required intervention to prevent permanent impairment",
    Outcome.OTHER_SERIOUS: "Other serious (important medical event)",
    Outcome.NON_SERIOUS: "Non-serious",
}
DISCORDANCE_LABELS = {
    DiscordanceType.FALSE_NEGATIVE: "False negative (AI missed a finding)",
    DiscordanceType.FALSE_POSITIVE: "False positive (AI flagged an absent finding)",
    DiscordanceType.DELAYED_NOTIFICATION: "Delayed notification",
    DiscordanceType.OTHER: "Other",
}
SEX_LABELS = {Sex.FEMALE: "Female", Sex.MALE: "Male", Sex.OTHER: "Other", Sex.UNKNOWN: "Unknown"}
READ_LABELS = {
    Label.PRESENT: "Finding present",
    Label.ABSENT: "Finding absent",
    Label.INDETERMINATE: "Indeterminate",
}
EVENT_TYPE_LABELS = {
    "adverse_event": "Adverse event",
    "product_problem": "Product problem",
    "both": "Both",
}
