-- requires-extension: timescaledb
-- Applied only where the timescaledb extension is available (see store/migrate.py); the
-- plain-PostgreSQL schema of 0001/0002 keeps working without it.

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- A hypertable's unique keys must contain its time column. The constraint names stay the
-- same, and the writer inserts these immutable tables with a target-less
-- ON CONFLICT DO NOTHING, so it needs no change.
ALTER TABLE ai_results DROP CONSTRAINT ai_results_pkey,
    ADD CONSTRAINT ai_results_pkey PRIMARY KEY (ai_event_id, inference_date);
SELECT create_hypertable('ai_results', by_range('inference_date', INTERVAL '7 days'),
                         migrate_data => true);

ALTER TABLE metric_snapshots DROP CONSTRAINT metric_snapshots_pkey,
    ADD CONSTRAINT metric_snapshots_pkey PRIMARY KEY (snapshot_id, at);
SELECT create_hypertable('metric_snapshots', by_range('at', INTERVAL '7 days'),
                         migrate_data => true);

DROP VIEW tool_daily;
CREATE MATERIALIZED VIEW tool_daily WITH (timescaledb.continuous) AS
SELECT
    time_bucket(INTERVAL '1 day', inference_date) AS day,
    tool_id,
    count(*)                                 AS results,
    count(*) FILTER (WHERE result_indicator) AS positive_calls
FROM ai_results
GROUP BY 1, 2
WITH NO DATA;
SELECT add_continuous_aggregate_policy('tool_daily',
    start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour');

-- AI results are part of the surveillance record: compressed, never dropped. Snapshots
-- are derived and can be recomputed from cases, so they expire after two years.
ALTER TABLE ai_results SET (timescaledb.compress, timescaledb.compress_segmentby = 'tool_id');
SELECT add_compression_policy('ai_results', INTERVAL '30 days');
ALTER TABLE metric_snapshots SET (timescaledb.compress,
                                  timescaledb.compress_segmentby = 'tool_id');
SELECT add_compression_policy('metric_snapshots', INTERVAL '7 days');
SELECT add_retention_policy('metric_snapshots', INTERVAL '730 days');
