"""PostgreSQL/TimescaleDB store: migrations, the batched idempotent writer, queries.

- `migrate(db_url)`: apply the numbered migrations (`surveillance db migrate`).
- `run_writer(bootstrap, db_url, stop_event)`: consume the surveillance topics into the
  database, committing Kafka offsets only after the rows are committed.
- `queries`: the read side used by the quarterly export and dashboards.
"""

from surveillance.store.errors import MigrationError, QueryError, StoreError
from surveillance.store.health import StoreHealth
from surveillance.store.migrate import migrate
from surveillance.store.writer import WriterSettings, WriterTopics, run_writer

__all__ = [
    "MigrationError",
    "QueryError",
    "StoreError",
    "StoreHealth",
    "WriterSettings",
    "WriterTopics",
    "migrate",
    "run_writer",
]
