"""Audits end to end: the configuration, the runner, the DuckDB store, the activation cache,
the drill-down and the reports."""
