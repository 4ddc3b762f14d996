"""`faithflow streams chat import SESSION FILE`: a session's chat messages from a file a
platform wrote from its chat provider — JSON lines (`.jsonl`, `.ndjson`, `.json`: one object a
line) or CSV with a header row — with the fields `viewer_id`, `body`, `sent_at` (ISO-8601 with
`Z` or an offset) and optionally `id` (the provider's message id) and `viewer_name`.

The whole file is checked before anything is written: a bad line is an error naming the file
and its line number (and how many other lines are bad), and nothing is taken in.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from faithflow_ops.errors import UserError
from faithflow_ops.streams import moderation_records as records
from faithflow_ops.streams.records import get_session

FORMATS = ("jsonl", "csv")
MAX_FILE_BYTES = 200 * 1024 * 1024


def format_of(path: Path, given: str | None) -> str:
    if given is not None:
        if given not in FORMATS:
            raise UserError(f"--format {given!r} is not one of: {', '.join(FORMATS)}")
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise UserError(f"{path.name}: cannot tell the format from its name; give --format jsonl|csv")


def _jsonl(text: str) -> list[tuple[int, object]]:
    items: list[tuple[int, object]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            items.append((number, records.ChatInputError(f"not JSON ({exc.msg})")))
    return items


def _csv(name: str, text: str) -> list[tuple[int, object]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [h for h in header if h not in records.CHAT_FIELDS]
    if unknown:
        raise UserError(
            f"{name} line 1: unknown column {unknown[0]!r}; "
            f"known columns: {', '.join(records.CHAT_FIELDS)}"
        )
    items: list[tuple[int, object]] = []
    line = 1
    for row in reader:
        if None in row:
            items.append((line + 1, records.ChatInputError("more fields than the header")))
        else:
            items.append((line + 1, {k: v for k, v in row.items() if v not in (None, "")}))
        line = reader.line_num
    return items


def read_file(path: Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """Every message in the file, checked; a UserError naming the first bad line."""
    kind = format_of(path, fmt)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{path.name} is over {MAX_FILE_BYTES // 2**20} MiB; split it")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"no file {path}; give the path of the chat export") from None
    except UnicodeDecodeError:
        raise UserError(f"{path.name} is not UTF-8 text; export it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    items = _jsonl(text) if kind == "jsonl" else _csv(path.name, text)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for number, item in items:
        where = f"{path.name} line {number}"
        if isinstance(item, records.ChatInputError):
            errors.append(f"{where}: {item}")
            continue
        try:
            rows.append(records.chat_row(item, where))
        except records.ChatInputError as exc:
            errors.append(str(exc))
    if errors:
        more = f" ({len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more}; nothing was imported")
    if not rows:
        raise UserError(f"{path.name} holds no messages")
    return rows


def import_file(
    session: Session, session_id: int, path: Path, fmt: str | None = None
) -> records.ChatImport:
    target = get_session(session, session_id)
    return records.insert_checked(session, target, read_file(path, fmt))
