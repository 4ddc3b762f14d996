"""Logs: JSON lines off a terminal, one line per job run, and never a secret."""

from __future__ import annotations

import io
import json
import logging

import structlog

from faithflow_ops.logging import configure


def _capture() -> io.StringIO:
    stream = io.StringIO()
    configure("json", stream=stream)
    return stream


def test_secret_fields_and_values_are_masked() -> None:
    stream = _capture()
    structlog.get_logger("t").info(
        "calling provider",
        api_key="abc123",
        authorization="Bearer tok_live_999",
        url="postgresql://root:hunter2@db:5432/x",
        note="used sk_live_51Habc and whsec_zz9",
        nested={"stripe_secret_key": "sk_test_1", "ok": "fine"},
    )
    out = stream.getvalue()
    for secret in ("abc123", "tok_live_999", "hunter2", "sk_live_51Habc", "whsec_zz9", "sk_test_1"):
        assert secret not in out
    line = json.loads(out.strip().splitlines()[-1])
    assert line["api_key"] == "***"
    assert line["url"] == "postgresql://root:***@db:5432/x"
    assert line["nested"]["ok"] == "fine"


def test_stdlib_logs_go_through_the_same_renderer_and_redaction() -> None:
    stream = _capture()
    logging.getLogger("somelib").warning("connect to postgresql://u:pw123@h/db failed")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert "pw123" not in line["event"]
    assert line["level"] == "warning"


def test_console_format_is_human_lines() -> None:
    stream = io.StringIO()
    configure("console", stream=stream)
    structlog.get_logger("t").info("hello", job="x")
    out = stream.getvalue()
    assert "hello" in out and "job" in out
    assert not out.lstrip().startswith("{")
