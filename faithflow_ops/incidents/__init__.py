"""Incidents: opened and resolved by the jobs that see a failure, escalated by hooks."""
