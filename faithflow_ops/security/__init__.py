"""Security policy enforcement and compliance (issue 19): the effective policy of a session or
user (`policy`), the enforcement planner and appliers behind `security enforce` (`enforce`),
the staff access gate (`access`) and the compliance audit (`audit`)."""
