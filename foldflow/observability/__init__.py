"""Observability base: JSON logs, Prometheus metrics, OpenTelemetry tracing."""
