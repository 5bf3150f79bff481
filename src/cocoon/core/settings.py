"""Loading service configs: pydantic models from TOML files plus ``COCOON_*`` environment variables.

Precedence (highest first): explicit overrides passed by the caller (CLI flags), environment
variables ``COCOON_<SECTION>__<KEY>`` (double underscore for nesting), the TOML file, the model's
defaults. Unknown keys in a file are an error: a typo must not silently fall back to a default.
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


def _env_overrides(section: str, environ: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"{ENV_PREFIX}{section.upper()}__"
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(prefix):
            continue
        path = name[len(prefix) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


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
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        # A file may hold several services' sections; take ours if present.
        if section in data and isinstance(data[section], dict):
            data = data[section]
    data = _merge(data, _env_overrides(section, os.environ if environ is None else environ))
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = f"{path}" if path else f"[{section}]"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}: invalid config: {problems}") from exc
