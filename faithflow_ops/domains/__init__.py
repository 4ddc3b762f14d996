"""Tenant custom domains: hostnames, the records a church creates, the lifecycle rules."""
