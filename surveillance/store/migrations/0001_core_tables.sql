-- Core tables. Every identifier stored here is already pseudonymized upstream (keyed HMAC
-- at ingest); no raw patient/accession identifier and no report or narrative text is kept.
-- Each table has the natural event key as its primary key, which is what makes replays and
-- at-least-once delivery idempotent.

-- One row per AI call (the AI side of an adjudicated case). Immutable: replays do nothing.
CREATE TABLE ai_results (
    ai_event_id              text        NOT NULL,
    case_id                  text        NOT NULL,
    tool_id                  text        NOT NULL,
    software_version         text        NOT NULL,
    finding_code             text        NOT NULL,
    site                     text        NOT NULL,
    ai_result                double precision NOT NULL CHECK (ai_result BETWEEN 0 AND 1),
    operating_threshold      double precision NOT NULL CHECK (operating_threshold BETWEEN 0 AND 1),
    result_indicator         boolean     NOT NULL,
    accession                text        NOT NULL,
    study_date               date        NOT NULL,
    inference_date           timestamptz NOT NULL,
    modality                 text        NOT NULL,
    scanner_manufacturer     text        NOT NULL,
    scanner_model            text        NOT NULL,
    scanner_software_version text        NOT NULL,
    protocol_name            text,
    age                      integer,
    sex                      text        NOT NULL,
    CONSTRAINT ai_results_pkey PRIMARY KEY (ai_event_id)
);
CREATE INDEX ai_results_tool_time ON ai_results (tool_id, inference_date);

-- The latest revision of every adjudicated case: the writer upserts with
-- "WHERE excluded.revision > cases.revision", so corrections replace and stale or replayed
-- revisions are ignored.
CREATE TABLE cases (
    case_id                  text        NOT NULL,
    revision                 integer     NOT NULL CHECK (revision >= 0),
    outcome                  text        NOT NULL CHECK (outcome IN
        ('TP', 'FP', 'TN', 'FN', 'indeterminate', 'pending', 'unlabelled')),
    label                    text,
    label_status             text,
    tool_id                  text        NOT NULL,
    software_version         text        NOT NULL,
    finding_code             text        NOT NULL,
    site                     text        NOT NULL,
    ai_result                double precision NOT NULL,
    operating_threshold      double precision NOT NULL,
    result_indicator         boolean     NOT NULL,
    accession                text        NOT NULL,
    study_date               date        NOT NULL,
    inference_date           timestamptz NOT NULL,
    labelled_at              timestamptz,
    modality                 text        NOT NULL,
    scanner_manufacturer     text        NOT NULL,
    scanner_model            text        NOT NULL,
    scanner_software_version text        NOT NULL,
    protocol_name            text,
    age                      integer,
    sex                      text        NOT NULL,
    ai_event_id              text        NOT NULL,
    report_event_id          text,
    -- The subgroup bands of the quarterly review, computed once so every query agrees.
    age_band                 text GENERATED ALWAYS AS (
        CASE
            WHEN age IS NULL THEN 'unknown'
            WHEN age < 18 THEN '0-17'
            WHEN age < 40 THEN '18-39'
            WHEN age < 65 THEN '40-64'
            ELSE '65+'
        END
    ) STORED,
    stored_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cases_pkey PRIMARY KEY (case_id)
);
CREATE INDEX cases_tool_study_date ON cases (tool_id, study_date);

-- Versions seen in the stream. first/last seen are kept with LEAST/GREATEST, which is
-- idempotent (a count would not be under redelivery).
CREATE TABLE model_versions (
    tool_id          text        NOT NULL,
    software_version text        NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    CONSTRAINT model_versions_pkey PRIMARY KEY (tool_id, software_version)
);

CREATE TABLE metric_snapshots (
    snapshot_id      text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('agreement', 'cusum', 'drift', 'shadow')),
    at               timestamptz NOT NULL,
    tool_id          text        NOT NULL,
    software_version text,
    site             text,
    "window"         text,
    metric           text        NOT NULL,
    detector         text,
    subgroup         jsonb,
    value            double precision,
    lower            double precision,
    upper            double precision,
    n                integer,
    CONSTRAINT metric_snapshots_pkey PRIMARY KEY (snapshot_id)
);
CREATE INDEX metric_snapshots_tool_time ON metric_snapshots (tool_id, kind, at);

-- Alerts are immutable events except resolved_at: an alert whose details carry
-- {"resolves": "<alert_id>"} closes that alert (see store/rows.py).
CREATE TABLE alerts (
    alert_id         text        NOT NULL,
    kind             text        NOT NULL,
    severity         text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    raised_at        timestamptz NOT NULL,
    tool_id          text        NOT NULL,
    software_version text,
    site             text,
    metric           text,
    value            double precision,
    interval_lower   double precision,
    interval_upper   double precision,
    baseline         double precision,
    n                integer,
    "window"         text,
    since            timestamptz,
    subgroup         jsonb,
    summary          text        NOT NULL,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    resolved_at      timestamptz,
    resolved_by      text,
    CONSTRAINT alerts_pkey PRIMARY KEY (alert_id)
);
CREATE INDEX alerts_tool_time ON alerts (tool_id, raised_at);

-- Adverse-event reports (3500A sections A, B, D, E reduced to what surveillance needs).
-- The narrative and the reporter's name and contact stay in the intake system: they are
-- free text or personal data and no figure needs them.
CREATE TABLE adverse_events (
    event_id          text        NOT NULL,
    received_at       timestamptz NOT NULL,
    aware_date        date        NOT NULL,
    patient_age       integer,
    patient_sex       text        NOT NULL,
    event_type        text        NOT NULL,
    outcome           text        NOT NULL,
    event_date        date        NOT NULL,
    tool_id           text        NOT NULL,
    manufacturer      text        NOT NULL,
    software_version  text        NOT NULL,
    clearance_number  text,
    reporter_role     text        NOT NULL,
    accession         text,
    ai_output         double precision,
    ai_threshold      double precision,
    radiologist_read  text,
    discordance_type  text        NOT NULL,
    CONSTRAINT adverse_events_pkey PRIMARY KEY (event_id)
);
CREATE INDEX adverse_events_tool_aware ON adverse_events (tool_id, aware_date);

-- Regulatory reports filed for an adverse event (obligation key as in
-- clinical/regulatory_clock.py, e.g. 'us_803:manufacturer').
CREATE TABLE adverse_event_filings (
    event_id    text        NOT NULL REFERENCES adverse_events (event_id),
    obligation  text        NOT NULL,
    filed_at    timestamptz NOT NULL,
    CONSTRAINT adverse_event_filings_pkey PRIMARY KEY (event_id, obligation)
);

-- Messages the writer could not store (invalid payload): kept by position, never by
-- content, so nothing is dropped silently and the consumer can still move on.
CREATE TABLE store_rejects (
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    reason       text        NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT store_rejects_pkey PRIMARY KEY (topic, "partition", "offset")
);

-- Finds the alert that resolves a given one (see the writer's resolution step).
CREATE INDEX alerts_resolves ON alerts ((details ->> 'resolves'))
    WHERE details ? 'resolves';
