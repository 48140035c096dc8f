"""Errors of the store: each says what is wrong and what to do, in one line."""

from surveillance.errors import SurveillanceError


class StoreError(SurveillanceError):
    """Base of the store's errors."""


class MigrationError(StoreError):
    """The schema could not be migrated (database unreachable, edited migration, bad SQL)."""


class QueryError(StoreError):
    """A query was asked for something that cannot be answered (bad quarter, no data)."""
