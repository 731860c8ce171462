"""The image commands' option flags, derived from the engine's option table.

Each option of the ``cli`` door becomes ``--long-name`` plus ``-alias`` for each of its aliases
(the reference tool's ``-om``, ``-a``, ``-bgc``, ...). Flags a user does not give are absent from
the parsed arguments, so the table's defaults apply.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..engine import OPTIONS, Options, OptionSpec

__all__ = ["add_option_flags", "options_from"]

CLI_OPTIONS: tuple[OptionSpec, ...] = tuple(spec for spec in OPTIONS if "cli" in spec.doors)


def _help(spec: OptionSpec) -> str:
    if spec.name == "format":
        return f"{spec.help[0].lower()}{spec.help[1:-1]} (default: from the output file name, " \
            "else png)"
    if spec.kind == "boolean" or spec.default is None or spec.kind == "model":
        return spec.help[0].lower() + spec.help[1:-1]
    return f"{spec.help[0].lower()}{spec.help[1:-1]} (default {spec.default})"


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("background removal")
    for spec in CLI_OPTIONS:
        flags = [f"-{alias}" for alias in spec.aliases] + [f"--{spec.name.replace('_', '-')}"]
        kwargs: dict[str, Any] = {"dest": spec.name, "default": argparse.SUPPRESS,
                                  "help": _help(spec)}
        if spec.kind == "boolean":
            kwargs["action"] = "store_true" if not spec.default else \
                argparse.BooleanOptionalAction
        elif spec.kind == "integer":
            kwargs.update(type=int, metavar=f"{spec.low:g}-{spec.high:g}")
        elif spec.kind == "choice":
            kwargs["choices"] = [*spec.choices, *(other for other, _ in spec.synonyms)]
        group.add_argument(*flags, **kwargs)


def options_from(args: argparse.Namespace, **overrides: Any) -> Options:
    """The options the user gave on the command line, with ``overrides`` for those not given."""
    given = {spec.name: getattr(args, spec.name) for spec in CLI_OPTIONS
             if hasattr(args, spec.name)}
    return Options.create(**{**overrides, **given})
