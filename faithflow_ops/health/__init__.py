"""The health sweep's checks (`faithflow health sweep|status|history`; runbook: docs/health.md).

`checks` runs them (each returns a `CheckResult`: status ok|warn|fail|skipped, latency, detail);
`history` reads the stored results back (`health status` with uptime, `health history`).
The job that runs the checks and records them is `faithflow_ops.jobs.health_sweep`.
"""
