-- Views read by dashboards and exports. On TimescaleDB, 0003 replaces tool_daily by a
-- continuous aggregate with the same name and columns, so readers never need to know.

-- Drift verdicts come from two sources: detector snapshots (kind 'drift') and drift
-- alerts. A view rather than a table keeps one copy of each fact.
CREATE VIEW drift_verdicts AS
SELECT
    'snapshot'::text  AS source,
    snapshot_id       AS verdict_id,
    at,
    tool_id,
    software_version,
    site,
    metric            AS feature,
    detector,
    value,
    NULL::text        AS severity,
    NULL::text        AS summary
FROM metric_snapshots
WHERE kind = 'drift'
UNION ALL
SELECT
    'alert'::text,
    alert_id,
    raised_at,
    tool_id,
    software_version,
    site,
    COALESCE(metric, kind),
    details ->> 'detector',
    value,
    severity,
    summary
FROM alerts
WHERE kind IN ('input_drift', 'output_drift', 'new_category', 'embedding_drift');

-- Daily volume and positive-call rate per tool, from the AI side. date_bin on plain
-- PostgreSQL; the TimescaleDB migration swaps in time_bucket over a hypertable.
CREATE VIEW tool_daily AS
SELECT
    date_bin('1 day', inference_date, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
    tool_id,
    count(*)                                   AS results,
    count(*) FILTER (WHERE result_indicator)   AS positive_calls
FROM ai_results
GROUP BY 1, 2;
