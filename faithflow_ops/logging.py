"""structlog set-up: console lines on a terminal, JSON lines otherwise; secrets never logged.

Logs always go to stderr so stdout stays parseable under cron (DESIGN §6).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|api[_-]?key|authorization|signature|routing[_-]?key)", re.I
)
# Values that look like credentials wherever they appear (keys, URLs with passwords).
_SECRET_VALUES = [
    re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"),
    re.compile(r"(?<=://)([^:/@\s]+):([^@\s]+)@"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
]
REDACTED = "***"


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        for pattern in _SECRET_VALUES:
            if pattern.groups == 2 and "://" in pattern.pattern:
                value = pattern.sub(lambda m: f"{m.group(1)}:{REDACTED}@", value)
            else:
                value = pattern.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _is_secret_key(k) else _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def _is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEYS.search(key))


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named fields and credential-shaped values."""
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    for key in list(event_dict):
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub_value(event_dict[key])
    return event_dict


_configured: str | None = None


def use_colour(stream: Any) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set to anything non-empty
    (https://no-color.org), as Rich does for the tables."""
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def configure(log_format: str | None = None, level: int = logging.INFO, stream: Any = None) -> None:
    """Configure structlog and route stdlib logging through the same renderer."""
    global _configured
    stream = stream or sys.stderr
    fmt = log_format or ("console" if stream.isatty() else "json")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=use_colour(stream))
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared[:-1], structlog.stdlib.ExtraAdder(), redact_secrets],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("sqlalchemy", "alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = fmt
