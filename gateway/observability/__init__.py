"""Observability: the metrics catalog, traces, access and audit logs, runtime gauges."""
