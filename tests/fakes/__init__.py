"""Loopback stand-ins for the outside world, each a real protocol server the product's real
client code talks to (DESIGN §7): `providers` (the generic FakeAPI, Stripe and Paystack),
`disputes` (Stripe and Paystack dispute lists), `dns_server` (an authoritative DNS server),
`tls` (TLS endpoints with trustme certificates), `twilio` (messages and signed status
callbacks), `render` (the Render custom-domain API), `pagerduty` (Events API v2).

`dns_server` and `twilio` also run as scripts in their own process for the benchmarks."""
