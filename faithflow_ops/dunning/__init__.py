"""Dunning: recovering past-due subscriptions (docs/dunning.md).

- `policy`: the ladder of steps (offset from `past_due_since`, channels, template, payment retry,
  hand-over to suspension), stored as one `dunning_policies` row or the built-in default, edited
  as a TOML file (`faithflow dunning policy show|set|reset`).
- `prefs`: each tenant's preferences (channels allowed, contact overrides, quiet hours, SMS and
  WhatsApp opt-outs, a pause until a promised payment), read in one batch for a whole run
  (`faithflow dunning prefs show|set`).
- `windows`: quiet windows (`sun 06:00-14:00`) as stored and typed; `quiet`: what they mean in
  the tenant's time zone — the first minute a message may go out.
- `cases`: one case per past-due episode, opened and closed by the subscription's status.
- `planner`: the step each open case takes now, its channels and send time (the plan of
  `faithflow dunning run`); `steps`: applying it (outbox messages, skips, hand-over, payment
  retries through `retry`).
- `analytics`: what the ladder achieved (`faithflow dunning analytics`).

The `dunning` job (faithflow_ops/jobs/dunning_run.py) is the glue that runs planner and steps.
"""
