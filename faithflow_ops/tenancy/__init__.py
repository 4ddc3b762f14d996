"""Tenants (churches) and their security policies: the operator-facing rules, outside the CLI."""
