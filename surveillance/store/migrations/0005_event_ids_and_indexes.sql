-- Event-id uniqueness that also holds on a TimescaleDB hypertable, and an index for every
-- query of store/queries.py (tests/test_store_explain.py checks each plan).

-- One row per AI event id, whatever its inference date: a hypertable's unique keys must
-- include its time column, so ai_results alone cannot say "this id was seen". `digest`
-- (sha256 of the AI-result row, store/event_ids.py) tells a replay (same digest) from a
-- conflict (same id, other content), which the writer dead-letters into store_rejects.
CREATE TABLE ai_event_ids (
    ai_event_id     text        NOT NULL,
    inference_date  timestamptz NOT NULL,
    digest          text,
    CONSTRAINT ai_event_ids_pkey PRIMARY KEY (ai_event_id)
);
-- Rows stored before this table existed: the earliest inference date per id is the one
-- kept; their digest is unknown (NULL), so only the inference date decides a conflict.
INSERT INTO ai_event_ids (ai_event_id, inference_date)
SELECT DISTINCT ON (ai_event_id) ai_event_id, inference_date
FROM ai_results
ORDER BY ai_event_id, inference_date;

-- tools_in_quarter: every tool with cases in a date range.
CREATE INDEX cases_study_date ON cases (study_date);
-- version_cases, cases_of_version: one version of one tool.
CREATE INDEX cases_tool_version_study_date ON cases (tool_id, software_version, study_date);
-- alerts(): raised in the quarter (alerts_tool_time) OR resolved in it (this one).
CREATE INDEX alerts_tool_resolved ON alerts (tool_id, resolved_at) WHERE resolved_at IS NOT NULL;
-- tool_daily on plain PostgreSQL (a view): a filter on its `day` is pushed down as this very
-- expression, so a long-range panel or the export reads its days, not the whole table.
-- (TimescaleDB reads the continuous aggregate instead; 0006 drops this index there.)
CREATE INDEX ai_results_day_tool ON ai_results
    (date_bin('1 day', inference_date, TIMESTAMPTZ '2000-01-01 00:00:00+00'), tool_id);
