"""PyYAML's SafeLoader with YAML 1.2 core-schema scalars, for manifests and data files.

Plain scalars resolve by YAML 1.2's core schema, not PyYAML's YAML 1.1 rules:
under 1.1 an unquoted ``16:9`` is the base-60 integer 969, ``9:19.5`` a float,
``yes`` a boolean and ``2024-01-01`` a date, which would turn a valid aspect
ratio or id into a puzzling type error. Only the safe constructors exist, so
``!!python/...`` tags fail.
"""

from __future__ import annotations

import re
from typing import Final

import yaml
from yaml.nodes import Node

BOOL_TAG: Final = "tag:yaml.org,2002:bool"
INT_TAG: Final = "tag:yaml.org,2002:int"
FLOAT_TAG: Final = "tag:yaml.org,2002:float"
MERGE_TAG: Final = "tag:yaml.org,2002:merge"
# YAML 1.1 only: sexagesimal numbers, yes/no/on/off, timestamps, the `=` value key.
_DROPPED = {BOOL_TAG, INT_TAG, FLOAT_TAG, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}


class CoreLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (see the module docstring)."""


CoreLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
CoreLoader.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
CoreLoader.add_implicit_resolver(
    INT_TAG, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
CoreLoader.add_implicit_resolver(
    FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def parse_int(text: str) -> int:
    """A core-schema integer's value: decimal, 0o octal or 0x hex."""
    # Core schema: a leading 0 is decimal (PyYAML would read 010 as octal 8).
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_int(loader: yaml.SafeLoader, node: Node) -> int:
    return parse_int(str(loader.construct_scalar(node)))  # type: ignore[arg-type]


CoreLoader.add_constructor(INT_TAG, _construct_int)
