"""Live streaming operations (issue 18): channel and session records, the session lifecycle,
and the Mux sync's rules. docs/streams.md is the runbook."""
