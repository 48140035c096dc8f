"""Observability: Prometheus metrics (`metrics`); alert rules live in deploy/prometheus/."""
