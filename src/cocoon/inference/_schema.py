"""JSON schema → GBNF for grammar-constrained answers, honest about what it cannot enforce.

llama-cpp-python's converter silently ignores several keywords (numeric bounds among them), so an
answer could follow its grammar and still fail the schema. Here integer bounds are made exact
(a small range becomes an ``enum``; ``minimum`` 0 or 1 gets its own rule), and any other keyword
the grammar cannot express is an :class:`UnsupportedParameter` naming it, never a silent drop.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from cocoon.inference._refusals import UnsupportedParameter

__all__ = ["schema_to_gbnf"]

MAX_ENUM_RANGE = 1000
# Keywords the converter ignores: a grammar could not make the answer satisfy them.
_UNENFORCED = frozenset(
    {
        "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies",
        "minProperties", "maxProperties", "uniqueItems", "contains", "minContains", "maxContains",
        "patternProperties", "propertyNames", "multipleOf", "unevaluatedProperties", "unevaluatedItems",
    }
)  # fmt: skip
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
_INT_RULE = "x-cocoon-integer"
_INT_RULES = {"non-negative": "integral-part space", "positive": "[1-9] [0-9]{0,15} space"}


def _refuse(keyword: str, where: str) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"the JSON schema uses `{keyword}` at {where}, which constrained decoding cannot enforce here",
        param="response_format",
    )


def _integer(node: dict[str, Any], where: str) -> dict[str, Any]:
    low, high = node.get("minimum"), node.get("maximum")
    if "exclusiveMinimum" in node:
        low = node["exclusiveMinimum"] + 1
    if "exclusiveMaximum" in node:
        high = node["exclusiveMaximum"] - 1
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (low, high)):
        raise _refuse("minimum", where)
    if low is not None and high is not None and 0 <= high - low < MAX_ENUM_RANGE:
        return {"enum": list(range(low, high + 1))}
    if high is None and low in (0, 1):
        return {_INT_RULE: "non-negative" if low == 0 else "positive"}
    raise _refuse("maximum" if high is not None else "minimum", where)


def _tighten(node: Any, where: str) -> Any:
    """A copy of ``node`` whose integer bounds the converter will enforce; refuses the rest."""
    if not isinstance(node, dict):
        return node
    for keyword in _UNENFORCED & node.keys():
        raise _refuse(keyword, where)
    kind = node.get("type")
    if kind == "integer" and any(k in node for k in _BOUNDS):
        return _integer(node, where)
    if any(k in node for k in _BOUNDS):
        raise _refuse(next(k for k in _BOUNDS if k in node), where)
    if "format" in node and node["format"] not in _FORMATS:
        raise _refuse(f"format: {node['format']}", where)
    out = dict(node)
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            out[key] = {k: _tighten(v, f"{where}.{key}.{k}") for k, v in node[key].items()}
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(node.get(key), list):
            out[key] = [_tighten(v, f"{where}.{key}[{i}]") for i, v in enumerate(node[key])]
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out[key] = _tighten(node[key], f"{where}.{key}")
    return out


def _converter(prop_order: dict[str, int]) -> Any:
    # Imported here: importing llama_cpp loads its shared library.
    from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, SchemaConverter

    class Converter(SchemaConverter):  # type: ignore[misc]
        def visit(self, schema: Any, name: str) -> Any:
            kind = schema.get(_INT_RULE) if isinstance(schema, dict) else None
            if kind is None:
                return super().visit(schema, name)  # type: ignore[no-untyped-call]
            self._add_primitive("integral-part", PRIMITIVE_RULES["integral-part"])
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, _INT_RULES[kind])  # type: ignore[no-untyped-call]

    return Converter(prop_order=prop_order, allow_fetch=False, dotall=False, raw_pattern=False)  # type: ignore[no-untyped-call]


def schema_to_gbnf(schema: Mapping[str, Any], prop_order: list[str] | None = None) -> str:
    """GBNF text whose language is the JSON documents valid under ``schema`` (with root ``root``)."""
    tightened = _tighten(copy.deepcopy(dict(schema)), "#")
    converter = _converter({name: i for i, name in enumerate(prop_order or [])})
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(tightened)), "stdin")
        converter.visit(resolved, "")
        return str(converter.format_grammar())
    except Exception as exc:  # the converter raises many kinds on schemas it cannot express
        raise UnsupportedParameter(f"unsupported JSON schema: {exc}", param="response_format") from exc
