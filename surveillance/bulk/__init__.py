"""Bulk runs of the engine on a plain Kafka client (`surveillance backfill`)."""
