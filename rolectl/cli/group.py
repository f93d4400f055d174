"""The root command group: rolectl's error mapping, plus how the command tree reads.

When typer has built the click tree, every command gets: its help text with
the docstring's line breaks removed (the terminal wraps it) except in examples, which keep
their lines and are broken with a shell ``\\`` continuation where they would not fit 80
columns (so that a pasted example runs), the global options also after the command
(:mod:`.globals`, listed once in ``rolectl --help`` and pointed at from each command's page),
at most one typo suggestion, and a panel in ``rolectl --help``.
A command is prepared when it is first looked up, so a run pays only for its own command.

Internal: not part of the public API.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from typing import Any

import click
from typer.core import TyperGroup

from .errors import RolectlGroup

#: `rolectl --help` groups the commands in these panels, in this order. An add-on's commands
#: (rolectl.cli.app.ADDONS) name their own panel and come after these.
PANELS: dict[str, tuple[str, ...]] = {
    "Changing roles": (
        "init",
        "add-admin",
        "remove-admin",
        "transfer",
        "grant",
        "revoke",
        "ban",
        "unban",
        "roles",
        "mailbox",
    ),
    "Reading": ("role", "users", "admins", "grants", "events"),
    "Cache diagnostics": ("stats", "whois", "cache"),
    "Scripting": ("apply", "doctor", "backup", "restore", "copy", "access"),
}
_ORDER = [name for names in PANELS.values() for name in names]
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
# click >= 8.4 suggests a close command name itself; typer would add the same suggestion again.
log = logging.getLogger("rolectl.cli")
_TYPER_SUGGESTS = not hasattr(click.exceptions, "NoSuchCommand")


#: An example line is at most this wide, so that with the help page's margin it fits 80
#: columns and the terminal never wraps it.
EXAMPLE_WIDTH = 76
#: Lines of an example start at the margin (typer dedents help text, so an indent would come
#: and go with the other paragraphs); continuation lines are indented by this much.
CONTINUATION = "    "
_EXAMPLE = "Example:"


def unwrap(text: str | None) -> str | None:
    """Help text without the docstring's own line breaks: each paragraph is one line, which
    the terminal wraps at its width. A paragraph starting with ``\\b`` keeps its lines, and
    ``Example: COMMAND`` paragraphs become one block of commands, one per line (see
    :func:`example_lines`)."""
    if not text:
        return text
    paragraphs: list[str] = []
    examples: list[str] = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith(_EXAMPLE):
            examples.append(" ".join(line.strip() for line in paragraph[len(_EXAMPLE) :].splitlines()).strip())
        elif paragraph.startswith("\b"):
            paragraphs.append(paragraph[1:].strip("\n"))
        else:
            paragraphs.append(" ".join(line.strip() for line in paragraph.splitlines()))
    if examples:
        lines = [line for command in examples for line in example_lines(command)]
        paragraphs.append(("Examples:" if len(examples) > 1 else _EXAMPLE) + "\n" + "\n".join(lines))
    return "\n\n".join(paragraphs)


def example_lines(command: str, width: int = EXAMPLE_WIDTH) -> list[str]:
    """A shell command as lines of at most ``width`` characters: broken at spaces
    outside quotes, each broken line ending in `` \\`` so that the lines pasted into a
    shell run as the one command. A single word longer than a line stays whole."""
    lines: list[list[str]] = [[]]

    def length(words: list[str]) -> int:
        return len(CONTINUATION if len(lines) > 1 else "") + len(" ".join(words))

    for word in _shell_words(command):
        line = lines[-1]
        if line and length(line + [word]) + 2 > width:
            # an option goes down with its value: `--password-file FILE` stays together
            moved = [line.pop()] if len(line) > 1 and line[-1].startswith("-") and not word.startswith("-") else []
            lines.append(moved)
        lines[-1].append(word)
    return [
        (CONTINUATION if n else "") + " ".join(words) + (" \\" if n < len(lines) - 1 else "")
        for n, words in enumerate(lines)
    ]


def _shell_words(command: str) -> list[str]:
    """``command`` split at spaces that are outside single and double quotes (the quotes kept)."""
    words, word, quote = [], "", ""
    for char in command:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == " ":
            if word:
                words.append(word)
            word = ""
            continue
        word += char
    return words + ([word] if word else [])


def _prepare(command: click.Command) -> None:
    if getattr(command, "_rolectl_prepared", False):
        return
    setattr(command, "_rolectl_prepared", True)
    command.help = unwrap(command.help)
    from .options import TEXT

    for param in command.params:
        if isinstance(param, click.Option) and param.help:
            param.help = unwrap(param.help)
        if isinstance(param, click.Option) and isinstance(param.type, click.types.StringParamType):
            param.type = TEXT  # text that is not UTF-8 is refused here, naming the option
    from .globals import POINTER, add_to

    if add_to(command) and not command.epilog:  # a group too: `rolectl users --role admin --db bot.db` lists
        command.epilog = POINTER
    if isinstance(command, click.Group):
        if isinstance(command, TyperGroup):
            command.suggest_commands = _TYPER_SUGGESTS
        for sub in command.commands.values():
            _prepare(sub)


class Group(RolectlGroup):
    """``rolectl`` itself: commands in panels, global options accepted after the command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = unwrap(self.help)
        self.suggest_commands = _TYPER_SUGGESTS
        for name, command in self.commands.items():
            if name in _PANEL_OF:
                setattr(command, "rich_help_panel", _PANEL_OF[name])
        # typer built this group from what rolectl.cli.root.app had registered so far;
        # commands registered later are converted by _sync.
        from .root import app

        self._seen = (len(app.registered_commands), len(app.registered_groups))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # A command's module is imported, and its options built, when it is first looked
        # up: a run pays for its own command only (`rolectl role` start-up is a benchmarked
        # target). An unknown name loads everything (for the typo suggestion).
        command = super().get_command(ctx, cmd_name)
        if command is None:
            from .root import COMMANDS

            for module in COMMANDS.get(cmd_name, ()):
                importlib.import_module(f"{__package__}.{module}")
            self._sync()
            command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load_all()
            command = super().get_command(ctx, cmd_name)
        if command is not None:
            _prepare(command)
        return command

    def _load_all(self) -> None:
        """Every command, add-ons included: for help, completion and an unknown name."""
        importlib.import_module(f"{__package__}.app")
        self._sync()

    def _sync(self) -> None:
        """Turn what was registered on the root app since the last look into click commands."""
        from typer.main import get_command_from_info, get_group_from_info

        from .root import app

        done_commands, done_groups = self._seen
        self._seen = (len(app.registered_commands), len(app.registered_groups))
        new: list[click.Command] = [
            get_command_from_info(
                info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
            )
            for info in app.registered_commands[done_commands:]
        ]
        new += [
            get_group_from_info(
                info,
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
                suggest_commands=app.suggest_commands,
            )
            for info in app.registered_groups[done_groups:]
        ]
        for command in new:
            if command.name:
                if command.name in _PANEL_OF:
                    setattr(command, "rich_help_panel", _PANEL_OF[command.name])
                self.commands[command.name] = command

    def invoke(self, ctx: click.Context) -> Any:
        started = time.perf_counter()
        try:
            return super().invoke(ctx)
        finally:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s finished in %.1f ms",
                    ctx.invoked_subcommand or "rolectl",
                    1000 * (time.perf_counter() - started),
                )

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_all()
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER))
