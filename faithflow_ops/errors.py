"""Errors that carry a message meant for an operator (never a traceback)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the operator can fix: bad input, unknown record, missing setting.

    The CLI turns it into a one-line message and exit code 2; the receiver into a 4xx.
    """

    exit_code = 2


class ConfigError(UserError):
    """A setting is missing or malformed; the message names the variable."""


class NotFound(UserError):
    """A tenant, plan, subscription… named by the operator does not exist."""


def one_of(what: str, value: str, choices: tuple[str, ...]) -> str:
    """`value` when it is one of `choices`, else a UserError listing them."""
    if value not in choices:
        raise UserError(f"{what} {value!r} is not one of: {', '.join(choices)}")
    return value
