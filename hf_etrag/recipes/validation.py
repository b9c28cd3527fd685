"""Recipe values checked against their field's type before anything loads.

`parse_recipe` hands a recipe's YAML values to the parser as defaults (`set_defaults`), and argparse applies
neither `type=` nor `choices=` to non-string defaults: a list for `max_steps`, a choice that does not exist, or
`save_strategy: no` (which YAML reads as `False`) would pass and fail later, far from the file. [`check_value`]
checks each value against the type hint of its dataclass field, the way a flag would be checked:

- `int`, `float`: a number, or a string that reads as one (YAML reads `1e-4` as a string; argparse converts it);
  never a boolean.
- `bool`: `true`/`false` (or the strings `HfArgumentParser` reads as booleans: yes/no, true/false, 1/0).
- `str`: a string; a YAML boolean or number is refused with the advice to quote it.
- `Literal[...]` and `Enum` subclasses: one of the choices (for an enum, one of its values); `Union[Enum, str]`
  (the Trainer's `save_strategy`, `lr_scheduler_type`, ...) is read as the enum's choices.
- `list[X]`: a list of X; a single X is taken as a one-element list (as `--flag X` would give).
- `dict`: a mapping (or, where the field takes `str` too, JSON text).
- `Optional`/`Union`: any member; `None` where the field allows it; other types: accepted as they are.

[`UniqueKeyLoader`] reads YAML with duplicate keys refused (PyYAML keeps the last one silently).

This module imports no torch, transformers or datasets.
"""

from __future__ import annotations

import difflib
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import yaml

__all__ = ["DuplicateKeyError", "UniqueKeyLoader", "check_value", "describe_type", "field_types"]

# Fields whose own `__post_init__` reads more than their type hint says (peft_on_retriever: true/false).
_ALSO_BOOL = {"peft_on_retriever"}
_BOOL_STRINGS = {"yes", "no", "true", "false", "t", "f", "y", "n", "1", "0"}


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping holds the same key twice."""

    def __init__(self, key: Any, first: int, line: int, mark: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", mark)
        self.key, self.first, self.line = key, first, line


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping with the same key twice (naming the key and both lines)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: let SafeLoader report it
                continue
            if first is not None:
                raise DuplicateKeyError(key, first, line, key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def field_types(classes: tuple[type, ...]) -> dict[str, Any]:
    """The resolved type hint of every `init` field of the dataclasses `classes` (`Any` where one cannot be
    resolved)."""
    import dataclasses

    types_by_name: dict[str, Any] = {}
    for cls in classes:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # a hint that names something not importable here: check nothing for this class
            hints = {}
        for item in dataclasses.fields(cls):
            if item.init:
                types_by_name[item.name] = hints.get(item.name, Any)
    return types_by_name


def _members(hint: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(hint)
    return None


def _enum_with_str(members: tuple[Any, ...]) -> type[enum.Enum] | None:
    """`Union[SomeEnum, str]` (optionally with None): the enum, whose values are the choices."""
    rest = [m for m in members if m is not type(None)]
    enums = [m for m in rest if isinstance(m, type) and issubclass(m, enum.Enum)]
    if len(rest) == 2 and len(enums) == 1 and str in rest:
        return enums[0]
    return None


def describe_type(hint: Any) -> str:
    """`int | None` -> 'an integer or null'."""
    members = _members(hint)
    if members is not None:
        enum_class = _enum_with_str(members)
        if enum_class is not None:
            text = describe_type(enum_class)
            return text + (" or null" if type(None) in members else "")
        return " or ".join(describe_type(m) for m in members)
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(member.value) for member in hint)
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return f"a list of {_plural(describe_type(args[0]))}" if args else "a list"
    if hint is dict or origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            return text[len(article) :] + "s"
    return text


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


class _Refused(Exception):
    """A value that does not fit a hint, with an optional fix."""

    def __init__(self, fix: str = "") -> None:
        super().__init__(fix)
        self.fix = fix


def _fits(value: Any, hint: Any) -> Any:
    """`value`, possibly normalised (a single list item becomes a list), or raise `_Refused`."""
    if hint is Any or hint is object:
        return value
    members = _members(hint)
    if members is not None:
        if value is None and type(None) in members:
            return None
        enum_class = _enum_with_str(members)
        if enum_class is not None:
            return _fits(value, enum_class)
        fixes = []
        for member in members:
            try:
                return _fits(value, member)
            except _Refused as refused:
                fixes.append(refused.fix)
        raise _Refused(next((fix for fix in fixes if fix), ""))
    if hint is type(None):
        if value is None:
            return None
        raise _Refused()
    if value is None:
        raise _Refused("write a value, or leave the key out for the default.")
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool) or (isinstance(value, str) and value.lower() in _BOOL_STRINGS):
            return value
        raise _Refused("write true or false.")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                int(value)
                return value
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            raise _Refused(f"write it as a whole number: {int(value)}.")
        raise _Refused("write a whole number.")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                float(value)
                return value
            except ValueError:
                pass
        raise _Refused("write a number such as 0.5 or 1.0e-4.")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, int, float)):
            text = (
                {True: "yes", False: "no"}.get(value, str(value)) if isinstance(value, bool) else str(value)
            )
            reason = (
                " (YAML reads an unquoted no/off/yes/on/true/false as a boolean)"
                if isinstance(value, bool)
                else ""
            )
            raise _Refused(f'quote it{reason}: "{text}".')
        raise _Refused()
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices and not (isinstance(value, bool) and not any(c is value for c in choices)):
            return value
        raise _Refused(_bool_choice_fix(value, choices))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint):
            return value
        values = [member.value for member in hint]
        if isinstance(value, str) and value in values:
            return value
        raise _Refused(_bool_choice_fix(value, values))
    if hint is list or origin is list:
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        if isinstance(value, (list, tuple)):
            return [_fits(item, item_hint) for item in value]
        return [_fits(value, item_hint)]  # `key: q_proj` as `--key q_proj` would give: ['q_proj']
    if hint is dict or origin is dict:
        if isinstance(value, Mapping):
            return value
        raise _Refused("write a mapping such as {key: value}.")
    if isinstance(hint, type) and not isinstance(value, hint) and hint.__module__ == "builtins":
        raise _Refused()
    return value  # a class of some library (a config object): its own constructor checks it


def _bool_choice_fix(value: Any, choices: Any) -> str:
    if isinstance(value, bool):
        for text in ("yes", "on", "true") if value else ("no", "off", "false"):
            if text in choices:
                return f'quote it: "{text}" (YAML reads an unquoted {text} as a boolean).'
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1)
        if close:
            return f"did you mean {close[0]!r}?"
    return "use one of the choices named."


def check_value(name: str, value: Any, hint: Any, where: str) -> Any:
    """Check `value` of recipe key `name` against the field's type `hint`; return it (a single item given for a
    list field becomes a one-element list). Raise a `ValueError` that starts with `where` (the recipe file),
    names the key, what it must be, what it got and the fix."""
    if name in _ALSO_BOOL and isinstance(value, bool):
        return value
    try:
        return _fits(value, hint)
    except _Refused as refused:
        fix = f" Fix: {refused.fix}" if refused.fix else ""
        raise ValueError(
            f"{where}: key {name!r} must be {describe_type(hint)}; got {_got(value)}.{fix}"
        ) from None
