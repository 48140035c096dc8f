"""The worker's Faust consumer, producer and stream options, in one place.

Used by the worker app (`stream.app`) and by the throughput benchmark's no-op Faust agent,
which must run with exactly the worker's options to measure the worker's floor.
"""

from __future__ import annotations

from typing import Any

from surveillance.stream.faust_consumer import QuietMonitor

WORKER_OPTIONS: dict[str, Any] = {
    # No per-record statistics (`stream.faust_consumer`): the Faust-floor benchmark's app
    # then runs the worker's Monitor too.
    "Monitor": QuietMonitor,
    "topic_allow_declare": False,  # `surveillance topics create` made every topic
    "topic_disable_leader": True,
    "consumer_auto_offset_reset": "earliest",
    # The embedded broker holds a join for about the rebalance timeout: keep it short.
    "broker_session_timeout": 10.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 3.0,
    "producer_linger": 0.005,
    "broker_max_poll_records": 2000,
    "stream_buffer_maxsize": 8192,
    # Faust's own pages are off: `/table/<table>/<key>/` would serve any table row (the
    # adverse-event reports among them) to anyone who reaches the port, unauthenticated.
    # What remains: `/` ({"status": "OK"}), `/metrics`, `/surveillance/counts`.
    "web_router_enabled": False,
    "web_tables_enabled": False,
    "web_graph_enabled": False,
    "web_stats_enabled": False,
    "web_metrics_enabled": False,
}

#: Each table's RocksDB options (`SURVEILLANCE_STREAM__STORE=rocksdb://`; one database per
#: table partition). Faust's defaults give each database a 2 GiB block cache and up to
#: three 64 MiB memtables: a worker rebuilding a 2M-exam/yr system's tables (4 tables x
#: its partitions, ~3M records read once) grows past the 2 GiB target on caches alone.
#: The tables are written in batches and read by key or once per rebuild, so small
#: caches cost little: at most 2 x 4 MiB of memtables and 8 MiB of cache per database.
#: The memory store ignores them.
TABLE_OPTIONS: dict[str, Any] = {
    "write_buffer_size": 4 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 << 20,
}
