"""The payload codec of the job contract (faithflow_ops.actions.encode/decode): what a plan
writes into Action.data is plain JSON, and apply reads it back typed."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import pytest

from faithflow_ops.actions import decode, encode

AT = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Line:
    code: str
    day: dt.date


@dataclass(frozen=True)
class Notice:
    case_id: int
    due_at: dt.datetime
    retry_at: dt.datetime | None = None
    channels: tuple[str, ...] = ()
    lines: tuple[Line, ...] = ()
    meta: dict[str, int] = field(default_factory=dict)


def test_encode_writes_plain_json_in_field_order() -> None:
    notice = Notice(7, AT, None, ("email", "sms"), (Line("a", AT.date()),), {"n": 1})
    data = encode(notice)
    assert list(data) == ["case_id", "due_at", "retry_at", "channels", "lines", "meta"]
    assert data == {
        "case_id": 7,
        "due_at": "2026-03-01T09:00:00+00:00",
        "retry_at": None,
        "channels": ["email", "sms"],
        "lines": [{"code": "a", "day": "2026-03-01"}],
        "meta": {"n": 1},
    }
    assert json.loads(json.dumps(data)) == data


def test_decode_reads_back_the_same_payload() -> None:
    notice = Notice(7, AT, AT, ("email",), (Line("a", AT.date()),))
    assert decode(Notice, json.loads(json.dumps(encode(notice)))) == notice


def test_decode_fills_defaults_and_ignores_keys_it_does_not_declare() -> None:
    assert decode(Notice, {"case_id": 1, "due_at": AT.isoformat(), "tenant": "x"}) == Notice(1, AT)


def test_decode_names_a_missing_field() -> None:
    with pytest.raises(ValueError, match="Notice payload has no 'due_at'"):
        decode(Notice, {"case_id": 1})


def test_encode_refuses_what_is_not_a_dataclass_instance() -> None:
    with pytest.raises(TypeError):
        encode({"case_id": 1})
    with pytest.raises(TypeError):
        encode(Notice)
