"""Provider webhooks: parse a verified delivery, store it once, apply it once and in order.

- `events`: a verified body → `InboundEvent` (idempotency key, type, object, time).
- `inbox`: the `webhook_events` row — insert-or-count, then handle in the same transaction.
- `stripe`, `paystack`: the handlers, one per event type, over the billing state machine
  (`billing.lifecycle`: subscription state, invoices, payments, disputes).
"""
