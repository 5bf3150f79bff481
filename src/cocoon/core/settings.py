"""Loading service configs: pydantic models from TOML files plus ``COCOON_*`` environment variables.

Precedence (highest first): explicit overrides passed by the caller (CLI flags), environment
variables ``COCOON_<SECTION>__<KEY>`` (double underscore for nesting), the TOML file, the model's
defaults. Unknown keys in a file are an error: a typo must not silently fall back to a default.
An invalid value is blamed on where it came from: the environment variable, the caller's option or
the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cocoon.errors import ConfigError

__all__ = ["load_config"]

M = TypeVar("M", bound=BaseModel)
ENV_PREFIX = "COCOON_"


def _env_overrides(
    section: str, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The nested overrides of ``COCOON_<SECTION>__...`` variables, and which variable set each key."""
    prefix = f"{ENV_PREFIX}{section.upper()}__"
    out: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, value in environ.items():
        if not name.startswith(prefix):
            continue
        path = name[len(prefix) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        origin[tuple(path)] = name
    return out, origin


def _source(
    loc: tuple[str, ...],
    env: Mapping[tuple[str, ...], str],
    overrides: Mapping[str, Any],
    path: Path | None,
    section: str,
) -> str:
    """Who set the value at ``loc``: caller overrides win over the environment, which wins over the file."""
    if loc and loc[0] in overrides:
        return "command line"
    for depth in range(len(loc), 0, -1):
        if loc[:depth] in env:
            return env[loc[:depth]]
    return str(path) if path is not None else f"[{section}]"


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    model: type[M],
    path: Path | None,
    *,
    section: str,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> M:
    """Build ``model`` from ``path`` (TOML, optional), the environment and ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        # A file may hold several services' sections; take ours if present.
        if section in data and isinstance(data[section], dict):
            data = data[section]
    env, env_origin = _env_overrides(section, os.environ if environ is None else environ)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    data = _merge(_merge(data, env), given)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            where = _source(loc, env_origin, given, path, section)
            problems.setdefault(where, []).append(f"{'.'.join(loc) or '<root>'}: {err['msg']}")
        message = "; ".join(
            f"{where}: invalid config: {'; '.join(items)}" for where, items in problems.items()
        )
        raise ConfigError(message) from None
