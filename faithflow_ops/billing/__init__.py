"""Billing domain logic that is not a job: plans, subscriptions, provider identifiers, grace,
and the subscription/invoice/payment/dispute state machine (`lifecycle`)."""
