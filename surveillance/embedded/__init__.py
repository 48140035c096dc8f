"""The embedded stack for the demo, tests and benchmarks: a broker and a database."""

from surveillance.embedded.broker import EmbeddedBroker
from surveillance.embedded.errors import EmbeddedError
from surveillance.embedded.ports import free_port
from surveillance.embedded.postgres import EmbeddedPostgres

__all__ = ["EmbeddedBroker", "EmbeddedError", "EmbeddedPostgres", "free_port"]
