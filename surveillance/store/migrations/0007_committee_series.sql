-- The committee's figures (`surveillance committee --store`): triage turnaround, alert
-- burden, cost and value, and agreement of quantification tools, one row per figure, tool,
-- period and breakdown. They are computed from the input streams (acquisition times,
-- measurements) that the case tables do not keep, so the figures themselves are stored and
-- the Grafana tool drill-down reads them from here.
-- Re-running the command for the same period replaces its rows (the primary key).
CREATE TABLE committee_series (
    tool_id          text             NOT NULL,
    figure           text             NOT NULL,
    period_start     timestamptz      NOT NULL,
    period_end       timestamptz      NOT NULL CHECK (period_end > period_start),
    -- '' = all sites / all versions / no breakdown.
    site             text             NOT NULL DEFAULT '',
    software_version text             NOT NULL DEFAULT '',
    -- The breakdown inside a figure: 'flagged' / 'not flagged', a reading shift.
    series           text             NOT NULL DEFAULT '',
    value            double precision,
    lower            double precision,
    upper            double precision,
    n                integer,
    unit             text             NOT NULL,
    computed_at      timestamptz      NOT NULL,
    CONSTRAINT committee_series_pkey
        PRIMARY KEY (tool_id, figure, period_start, period_end, site, software_version, series)
);
CREATE INDEX committee_series_tool_time ON committee_series (tool_id, figure, period_end);
