"""A template name is an identifier (`^[a-z][a-z0-9_]*$`): a path (`../../outside`, an absolute
one) never reads a file outside the package; it is refused with the list of templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from faithflow_ops.comms import templates
from faithflow_ops.db import Database
from faithflow_ops.errors import UserError
from faithflow_ops.models import OutboundMessage


def test_a_path_as_template_name_is_refused_and_nothing_is_read(
    db: Database, cli: Any, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.email.txt"
    outside.write_text("Subject: secret $subject\n\nread from outside the package\n")
    stem = str(tmp_path / "outside")
    for name in (stem, "../../outside", "notice/../notice", "Notice", "notice.email", ""):
        result = cli(
            "comms", "send", "--channel", "email", "--to", "treasurer@church.example",
            "--template", name, "--var", "subject=Hi", "--var", "message=m",
        )  # fmt: skip
        assert result.exit_code == 2, (name, result.stderr)
        assert "is not a template name" in result.stderr, result.stderr
        assert "notice" in result.stderr  # the templates there are
        assert "Traceback" not in result.stderr
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(OutboundMessage)) == 0


@pytest.mark.parametrize("name", ["../comms/templates/notice", "/etc/passwd", "a b", "é"])
def test_load_and_available_refuse_a_path(name: str) -> None:
    with pytest.raises(UserError, match="is not a template name"):
        templates.load(name, "email")
    with pytest.raises(UserError, match="is not a template name"):
        templates.available(name)
