"""Data retention (issue 19): legal holds (`holds`) and the purge planner and appliers behind
`retention run` (`purge`)."""
