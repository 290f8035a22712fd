"""One configuration source: YAML files (config/config.yaml + overlays) into dataclass configs.

``load_config(paths, overrides)`` merges YAML files left to right, applies ``a.b.c=value``
overrides and validates the result against ``workflow/schemas/config.schema.yaml`` when it exists.
``build(Dataclass, mapping, where)`` turns one section into a dataclass, rejecting unknown keys
and wrongly typed values with a one-line :class:`UserError` that names the key.
``add_config_args`` / ``config_from_args`` are the ``--config`` / ``--set`` options every
config-driven command shares.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from nuwa.core.errors import UserError

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def deep_merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Loader(yaml.SafeLoader):
    """YAML 1.1's safe loader that also reads YAML 1.2 floats without a dot (``1e-3``) as numbers."""


Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789"))


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UserError(f"override {item!r} is not of the form section.key=value")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.load(raw, Loader=Loader)


def apply_overrides(cfg: dict, overrides: list[str] | None) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        keys, value = parse_override(item)
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {k} is not a section")
        node[keys[-1]] = value
    return cfg


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=Loader) or {}
    except UnicodeDecodeError as exc:
        raise UserError(f"config file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping at the top level")
    return data


def validate(cfg: dict, schema_path: Path = SCHEMA) -> None:
    if not schema_path.is_file():
        return
    import jsonschema

    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "<top>"
        raise UserError(f"bad config value at {where}: {err.message} (fix it in the config file or --set)")


def load_config(paths: list[str | Path], overrides: list[str] | None = None, *, check: bool = True) -> dict:
    cfg: dict = {}
    for p in paths:
        cfg = deep_merge(cfg, read_yaml(p))
    cfg = apply_overrides(cfg, overrides)
    if check:
        validate(cfg)
    return cfg


def config_hash(cfg: Mapping) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"bad config value at {where}: {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"bad config value at {where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"bad config value at {where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UserError(f"bad config value at {where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        seq = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, Mapping):
            raise UserError(f"bad config value at {where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"bad config value at {where}: expected a number, got {value!r}")
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise UserError(f"bad config value at {where}: expected true/false, got {value!r}")
    if tp in (int, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise UserError(f"bad config value at {where}: expected {tp.__name__}, got {value!r}")
    return value


def build(cls: type[T], mapping: Mapping | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``mapping``; unknown keys and bad types are one-line errors."""
    mapping = dict(mapping or {})
    if not isinstance(mapping, dict):
        raise UserError(f"bad config value at {where}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise UserError(f"unknown config key {where}.{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in mapping.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad config at {where}: {exc}") from exc
    return obj


def section(cfg: Mapping, dotted: str) -> dict:
    node: Any = cfg
    for k in dotted.split("."):
        if not isinstance(node, Mapping) or k not in node:
            return {}
        node = node[k]
    return dict(node)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The options every config-driven command shares."""
    parser.add_argument("--config", action="append", default=None, metavar="YAML",
                        help="config file(s), merged left to right (default: config/config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set nuwa.model.layers=4 (repeatable)")


def config_from_args(args: argparse.Namespace) -> dict:
    paths = args.config or [REPO_ROOT / "config" / "config.yaml"]
    return load_config(paths, args.overrides)
