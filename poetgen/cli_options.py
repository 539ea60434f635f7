"""The click options of the CLI, derived from the option dataclasses' fields (poetgen.options): each
option's default, type, range, choices and help come from its field, declared once.

It does not check settings (options.check_settings does, for the library and the server too) and is
imported only by the CLI's commands.
"""

from __future__ import annotations

import dataclasses
import math

import click

from poetgen.options import Range, display_name, field_help, field_of, field_type


class _FiniteRange(click.FloatRange):
    """click's FloatRange, refusing nan and ±inf too (nan passes its comparisons, and a range without an
    upper end takes inf): refused by click, under the option's own name."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def click_type(allowed: Range, kind: type) -> click.ParamType:
    """The click type of a declared range: IntRange for a whole number, else a finite FloatRange."""
    if kind is int:   # IntRange has no open ends: an open end is the next whole number
        low = None if allowed.low is None else int(allowed.low) + (1 if allowed.low_open else 0)
        high = None if allowed.high is None else int(allowed.high) - (1 if allowed.high_open else 0)
        return click.IntRange(low, high)
    return _FiniteRange(allowed.low, allowed.high, min_open=allowed.low_open, max_open=allowed.high_open)


def option(cls, name: str, *declarations: str, **overrides):
    """A click.option for field `name` of dataclass `cls`: its default, type, range, choices and help.

    `declarations` spell the option (default: --field-name); `overrides` are passed to click as they are
    (a path type, say). A bool field is a flag, or an on/off pair when spelled "--x/--no-x".
    """
    field = field_of(cls, name)
    kind = field_type(field)
    settings = {"help": field_help(cls, name), "show_default": field.default not in (None, "")}
    if field.default is not dataclasses.MISSING:
        settings["default"] = field.default
    else:
        settings["required"] = True
    if "range" in field.metadata:   # click refuses it first, naming the option as the user typed it
        settings["type"] = click_type(field.metadata["range"], kind)
    elif "choices" in field.metadata:
        settings["type"] = click.Choice(field.metadata["choices"])
    elif kind is bool:
        if not any("/" in d for d in declarations):
            settings["is_flag"] = True
    else:
        settings["type"] = kind
    declarations = declarations or ("--" + display_name(name),)
    if not any(d.isidentifier() for d in declarations):
        declarations = (*declarations, name)   # the parameter keeps the field's name
    return click.option(*declarations, **{**settings, **overrides})
