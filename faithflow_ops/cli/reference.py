"""The CLI reference (docs/cli.md), generated from the commands' own --help.

Regenerate with `python -m faithflow_ops.cli.reference > docs/cli.md` (or `make docs`); a test
fails when the file is stale or a command has no help text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

# As every real invocation has them (the root's context settings, inherited): click keeps the
# help option a command first made, so the reference must ask the same way.
HELP = ["-h", "--help"]


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under `command` (a click/Typer command object), depth first; groups the
    root loads on demand are loaded."""
    yield path, command
    if not hasattr(command, "list_commands"):
        return
    with typer.Context(command, info_name=" ".join(path) or None, help_option_names=HELP) as ctx:
        names = command.list_commands(ctx)
        subcommands = {name: command.get_command(ctx, name) for name in names}
    for name in sorted(subcommands):
        yield from walk(subcommands[name], (*path, name))


def render() -> str:
    from faithflow_ops.cli import app

    root = typer.main.get_command(app)
    parts = [
        "# `faithflow` CLI reference",
        "",
        "Generated from `--help` by `python -m faithflow_ops.cli.reference`; do not edit by hand.",
        "",
    ]
    for path, command in walk(root, ("faithflow",)):
        name = " ".join(path)
        with typer.Context(
            command, info_name=name, terminal_width=100, help_option_names=HELP
        ) as ctx:
            text = command.get_help(ctx)
        parts += [f"## `{name}`", "", "```", text.rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
