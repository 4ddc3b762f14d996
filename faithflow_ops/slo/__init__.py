"""Service level objectives as code: `ops/slo.toml` (spec), the Prometheus rules and Grafana
dashboard generated from it (rules, dashboard), and the database-only report (report)."""
