"""A policy offset too large for any calendar is the same clear refusal as one over 365 days
(a PolicyError naming the line, exit 2), never an OverflowError traceback."""

from __future__ import annotations

import pytest

from faithflow_ops.dunning.policy import PolicyError, parse_policy


@pytest.mark.parametrize(
    ("field", "value"),
    [("day", "99999999999999999999"), ("hours", "99999999999999999999"), ("day", "1000000000")],
)
def test_a_huge_offset_is_refused_naming_the_line(field: str, value: str) -> None:
    body = f'[[step]]\nkey = "a"\n{field} = {value}\nhandover = true\n'
    with pytest.raises(PolicyError) as caught:
        parse_policy(body)
    message = str(caught.value)
    assert "line 3" in message and "within 365 days" in message


def test_the_cli_refuses_it_with_exit_2(cli, db, tmp_path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[step]]\nkey = "a"\nday = 99999999999999999999\nhandover = true\n')
    result = cli("dunning", "policy", "set", "--file", str(path))
    assert result.exit_code == 2, result.output
    assert "within 365 days" in result.stderr
