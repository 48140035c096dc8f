-- requires-extension: timescaledb
-- TimescaleDB sized for this workload, with a continuous aggregate that stays right after
-- backfills and late events, and retention long enough to regenerate any quarterly review.
-- The choices and their numbers are in the README ("The store on TimescaleDB").

-- Volume: 3-6 tools at ~2,000 studies a day each is up to ~12,000 AI results a day; a row
-- takes ~415 bytes with its indexes (measured on 2.28.3; ~120 compressed), ~5 MB a day.
-- 30-day chunks hold ~360,000 rows (~150 MB): small next to any server's memory, 122
-- chunks in 10 years instead of 522 (7-day chunks held ~1,200 rows at the simulator's
-- volume). Applies to chunks created from now on.
SELECT set_chunk_time_interval('ai_results', INTERVAL '30 days');
SELECT set_chunk_time_interval('metric_snapshots', INTERVAL '30 days');

-- Every read filters on one tool and a time range, and drift rows are read in
-- (inference_date, ai_event_id) order: segment by tool, order by exactly that.
ALTER TABLE ai_results SET (timescaledb.compress_segmentby = 'tool_id',
                            timescaledb.compress_orderby = 'inference_date, ai_event_id');
ALTER TABLE metric_snapshots SET (timescaledb.compress_segmentby = 'tool_id',
                                  timescaledb.compress_orderby = 'at, snapshot_id');
-- Late reports arrive within the 14-day horizon and corrections within weeks: compress
-- after 60 days so nearly all of them land in uncompressed chunks (later ones still work,
-- TimescaleDB inserts into compressed chunks).
SELECT remove_compression_policy('ai_results', if_exists => true);
SELECT add_compression_policy('ai_results', INTERVAL '60 days');
SELECT remove_compression_policy('metric_snapshots', if_exists => true);
SELECT add_compression_policy('metric_snapshots', INTERVAL '60 days');

-- tool_daily: real-time aggregation on (buckets past the last refresh are computed from
-- ai_results at query time), and a refresh policy without a start offset: each run
-- re-materializes every bucket invalidated since the last one, however old (a backfilled
-- quarter, a late event 35 days back), and nothing else. The store writer also refreshes
-- the days a batch wrote in old time right after committing it (store/timescale.py).
SELECT remove_continuous_aggregate_policy('tool_daily', if_exists => true);
DROP INDEX IF EXISTS ai_results_day_tool;  -- serves the plain-PostgreSQL view only
ALTER MATERIALIZED VIEW tool_daily SET (timescaledb.materialized_only = false);
SELECT add_continuous_aggregate_policy('tool_daily',
    start_offset => NULL, end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour');

-- Case-level data is kept for the retention period (default 10 years, configurable with
-- SURVEILLANCE_DATABASE__RETENTION_DAYS; `surveillance db migrate` applies it). The
-- hypertables drop whole chunks past it; cases and the event-id keys (plain tables) are
-- deleted by a daily job.
CREATE PROCEDURE surveillance_expire_cases(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz := now() - make_interval(days => (config ->> 'retention_days')::integer);
BEGIN
    DELETE FROM cases WHERE study_date < cutoff::date;
    DELETE FROM ai_event_ids WHERE inference_date < cutoff;
END
$$;

CREATE FUNCTION surveillance_set_retention(days integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF days < 366 THEN
        RAISE EXCEPTION 'retention of % days is shorter than a year of quarterly reviews', days;
    END IF;
    IF EXISTS (SELECT 1 FROM timescaledb_information.jobs
               WHERE proc_name = 'surveillance_expire_cases'
                 AND (config ->> 'retention_days')::integer = days) THEN
        RETURN;  -- already in force: keep the jobs and their run history
    END IF;
    PERFORM remove_retention_policy('metric_snapshots', if_exists => true);
    PERFORM add_retention_policy('metric_snapshots', make_interval(days => days));
    PERFORM remove_retention_policy('ai_results', if_exists => true);
    PERFORM add_retention_policy('ai_results', make_interval(days => days));
    PERFORM delete_job(job_id) FROM timescaledb_information.jobs
        WHERE proc_name = 'surveillance_expire_cases';
    PERFORM add_job('surveillance_expire_cases', INTERVAL '1 day',
                    config => jsonb_build_object('retention_days', days));
END
$$;
SELECT surveillance_set_retention(3653);
