"""The FaithFlow receiver: task endpoints, health, metrics (and later, provider webhooks)."""

from __future__ import annotations

from receiver.app import create_app

__all__ = ["create_app"]
