"""Billing domain logic that is not a job: plans, subscriptions, provider identifiers."""
