"""Scheduled jobs: one module each; `registry` lists them (cheaply, for `--help`)."""
