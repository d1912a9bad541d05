"""Fact values to JSON and back, exactly: what a stored scan is judged from.

Pure (no I/O). JSON has no tuples, sets, bytes, dates, enums, dataclasses or
non-string keys, so every value that is not a JSON scalar or a list is written
as an object tagged with ``"$"``: ``{"$": "tuple", "items": [...]}``,
``{"$": "dc", "type": "certify.bundle.ingest:DiskIssue", "fields": {...}}``.
A plain JSON object never stands for itself, so no stored text can pass for a
tag or the other way round.

Decoding never imports anything and never instantiates a type the stored
document names unless that type was registered in advance (``FactTypes``):
the dataclasses and enums defined by certify's own fact modules and by the
modules of the installed collectors (a plugin's collector module, plus any
``GuestCollector.fact_types`` it lists). Anything else, and any malformed
document, is a ``FactsFormatError`` with the place it was found.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import importlib
import inspect
import json
import math
import pkgutil
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from certify.errors import CertifyError

TAG = "$"


class FactsFormatError(CertifyError):
    """A stored facts document that cannot be read: malformed, of another format, or naming an unknown type."""


class FactsEncodeError(CertifyError):
    """A fact value of a type the format cannot carry exactly (a bug in a collector, not in the upload)."""


def type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# Modules whose dataclasses and enums are facts (or parts of facts) by design. Packages are walked.
BUILTIN_FACT_MODULES = ("certify.model", "certify.bundle", "certify.guest")


def _defined_in(module: ModuleType) -> list[type]:
    return [obj for obj in vars(module).values()
            if inspect.isclass(obj) and obj.__module__ == module.__name__
            and (dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum))]  # fmt: skip


def _walk(name: str) -> list[ModuleType]:
    module = importlib.import_module(name)  # a fixed name of certify's own, never one from a document
    found = [module]
    if hasattr(module, "__path__"):
        for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name):
            found += _walk(f"{name}.{info.name}")
    return found


class FactTypes:
    """The dataclass and enum types a document may name, by ``module:qualname``."""

    def __init__(self, types: Iterable[type] = ()):
        self._types: dict[str, type] = {}
        for cls in types:
            self.add(cls)

    def add(self, cls: type) -> None:
        if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)) and not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
            raise TypeError(f"{type_name(cls)} is neither a dataclass nor an enum; it cannot be a fact type")
        self._types[type_name(cls)] = cls

    def add_module(self, module: ModuleType) -> None:
        for cls in _defined_in(module):
            self.add(cls)

    def get(self, name: str) -> type | None:
        return self._types.get(name)

    def __contains__(self, cls: type) -> bool:
        return self._types.get(type_name(cls)) is cls

    @classmethod
    def builtin(cls) -> FactTypes:
        types = cls()
        for package in BUILTIN_FACT_MODULES:
            for module in _walk(package):
                types.add_module(module)
        return types

    @classmethod
    def for_collectors(cls, collectors: Iterable[Any]) -> FactTypes:
        """certify's own fact types, plus those of each collector: its module's, and its ``fact_types``."""
        types = cls.builtin()
        for collector in collectors:
            module = sys.modules.get(getattr(collector.collect, "__module__", "") or "")
            if module is not None:
                types.add_module(module)
            for extra in getattr(collector, "fact_types", ()):
                types.add(extra)
        return types


# ---- encoding ----


def encode(value: Any, types: FactTypes) -> Any:
    """A JSON-ready value that ``decode`` turns back into an equal value of the same types."""
    return _encode(value, types, "value")


def _encode(value: Any, types: FactTypes, where: str) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return {TAG: "float", "text": repr(value)}  # nan, inf, -inf: JSON has no spelling for them
    if isinstance(value, enum.Enum):  # before int and str: IntEnum and StrEnum are both
        if kind not in types:
            raise FactsEncodeError(f"{where}: enum {type_name(kind)} is not a registered fact type")
        return {TAG: "enum", "type": type_name(kind), "name": value.name}
    if kind is list:
        return [_encode(v, types, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is tuple:
        return {TAG: "tuple", "items": [_encode(v, types, f"{where}[{i}]") for i, v in enumerate(value)]}
    if kind in (set, frozenset):
        items = [_encode(v, types, f"{where}{{}}") for v in value]
        items.sort(key=lambda e: json.dumps(e, sort_keys=True))  # a stable document for one set
        return {TAG: kind.__name__, "items": items}
    if kind is dict:
        if all(type(k) is str for k in value):
            return {TAG: "dict", "map": {k: _encode(v, types, f"{where}[{k!r}]") for k, v in value.items()}}
        return {TAG: "dict", "items": [[_encode(k, types, f"{where} key"), _encode(v, types, f"{where}[{k!r}]")]
                                       for k, v in value.items()]}  # fmt: skip
    if kind is bytes:
        return {TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")}
    if kind is datetime.datetime:
        if value.tzinfo is not None and not isinstance(value.tzinfo, datetime.timezone):
            raise FactsEncodeError(f"{where}: a datetime whose zone is not a fixed offset cannot be stored exactly")
        return {TAG: "datetime", "iso": value.isoformat()}
    if kind is datetime.date:
        return {TAG: "date", "iso": value.isoformat()}
    if kind is datetime.time:
        if value.tzinfo is not None and not isinstance(value.tzinfo, datetime.timezone):
            raise FactsEncodeError(f"{where}: a time whose zone is not a fixed offset cannot be stored exactly")
        return {TAG: "time", "iso": value.isoformat()}
    if kind is datetime.timedelta:
        return {TAG: "timedelta", "d": value.days, "s": value.seconds, "us": value.microseconds}
    if dataclasses.is_dataclass(value):
        if kind not in types:
            raise FactsEncodeError(f"{where}: dataclass {type_name(kind)} is not a registered fact type")
        fields = {f.name: _encode(getattr(value, f.name), types, f"{where}.{f.name}") for f in dataclasses.fields(value)}
        return {TAG: "dc", "type": type_name(kind), "fields": fields}
    raise FactsEncodeError(f"{where}: values of type {type_name(kind)} cannot be stored as facts")


# ---- decoding ----

_SHAPES: dict[str, tuple[str, ...]] = {
    "float": ("text",), "enum": ("type", "name"), "tuple": ("items",), "set": ("items",), "frozenset": ("items",),
    "bytes": ("b64",), "datetime": ("iso",), "date": ("iso",), "time": ("iso",), "timedelta": ("d", "s", "us"),
    "dc": ("type", "fields"),
}  # fmt: skip


def decode(data: Any, types: FactTypes) -> Any:
    """The value ``encode`` wrote; FactsFormatError for anything else."""
    try:
        return _decode(data, types, "value")
    except RecursionError:
        raise FactsFormatError("the facts document is nested too deeply") from None


def _fail(where: str, what: str) -> FactsFormatError:
    return FactsFormatError(f"{where}: {what}")


def _decode(data: Any, types: FactTypes, where: str) -> Any:
    kind = type(data)
    if data is None or kind in (bool, str, int):
        return data
    if kind is float:
        if not math.isfinite(data):
            raise _fail(where, "a bare non-finite number")
        return data
    if kind is list:
        return [_decode(v, types, f"{where}[{i}]") for i, v in enumerate(data)]
    if kind is not dict:
        raise _fail(where, f"{kind.__name__} is not a JSON value")
    tag = data.get(TAG)
    if not isinstance(tag, str):
        raise _fail(where, "an object without its type tag")
    if tag == "dict":
        return _decode_dict(data, types, where)
    if tag not in _SHAPES:
        raise _fail(where, f"unknown value tag {tag!r}")
    if set(data) != {TAG, *_SHAPES[tag]}:
        raise _fail(where, f"a {tag} takes the keys {', '.join(_SHAPES[tag])}")
    if tag in ("tuple", "set", "frozenset"):
        items = data["items"]
        if type(items) is not list:
            raise _fail(where, f"the items of a {tag} are not a list")
        decoded = [_decode(v, types, f"{where}[{i}]") for i, v in enumerate(items)]
        if tag == "tuple":
            return tuple(decoded)
        try:
            return set(decoded) if tag == "set" else frozenset(decoded)
        except TypeError:
            raise _fail(where, f"a {tag} item is not hashable") from None
    if tag == "float":
        text = data["text"]
        if text not in ("nan", "inf", "-inf"):
            raise _fail(where, "a float tag holds only nan, inf or -inf")
        return float(text)
    if tag == "bytes":
        text = data["b64"]
        try:
            if type(text) is not str:
                raise ValueError
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise _fail(where, "bytes that are not base64") from None
    if tag in ("datetime", "date", "time"):
        text = data["iso"]
        parse = {"datetime": datetime.datetime, "date": datetime.date, "time": datetime.time}[tag].fromisoformat
        try:
            if type(text) is not str:
                raise ValueError
            return parse(text)
        except ValueError:
            raise _fail(where, f"not an ISO {tag}") from None
    if tag == "timedelta":
        parts = [data[k] for k in ("d", "s", "us")]
        if any(type(p) is not int for p in parts):
            raise _fail(where, "a timedelta of non-integers")
        try:
            return datetime.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])
        except OverflowError:
            raise _fail(where, "a timedelta out of range") from None
    cls = _known(data["type"], types, where)
    if tag == "enum":
        if not issubclass(cls, enum.Enum):
            raise _fail(where, f"{data['type']} is not an enum")
        name = data["name"]
        if type(name) is not str or name not in cls.__members__:
            raise _fail(where, f"{data['type']} has no member {name!r}")
        return cls[name]
    return _decode_dataclass(cls, data, types, where)


def _decode_dict(data: dict, types: FactTypes, where: str) -> dict:
    keys = set(data) - {TAG}
    if keys == {"map"} and type(data["map"]) is dict:
        return {k: _decode(v, types, f"{where}[{k!r}]") for k, v in data["map"].items()}
    if keys == {"items"} and type(data["items"]) is list:
        out = {}
        for i, pair in enumerate(data["items"]):
            if type(pair) is not list or len(pair) != 2:
                raise _fail(f"{where}[{i}]", "a dict item is not a [key, value] pair")
            key = _decode(pair[0], types, f"{where}[{i}] key")
            try:
                out[key] = _decode(pair[1], types, f"{where}[{key!r}]")
            except TypeError:
                raise _fail(f"{where}[{i}]", "a dict key is not hashable") from None
        return out
    raise _fail(where, "a dict takes either a map or a list of items")


def _known(name: Any, types: FactTypes, where: str) -> type:
    cls = types.get(name) if isinstance(name, str) else None
    if cls is None:
        raise _fail(where, f"type {name!r} is not a known fact type (is the plugin that defines it installed?)")
    return cls


def _decode_dataclass(cls: type, data: dict, types: FactTypes, where: str) -> Any:
    if not dataclasses.is_dataclass(cls):
        raise _fail(where, f"{type_name(cls)} is not a dataclass")
    stored = data["fields"]
    if type(stored) is not dict:
        raise _fail(where, "dataclass fields are not an object")
    names = [f.name for f in dataclasses.fields(cls)]
    if set(stored) != set(names):
        missing, extra = sorted(set(names) - set(stored)), sorted(set(stored) - set(names))
        raise _fail(where, f"{type_name(cls)} fields do not match (missing: {', '.join(missing) or '-'}; "
                           f"unknown: {', '.join(extra) or '-'})")  # fmt: skip
    values = {name: _decode(stored[name], types, f"{where}.{name}") for name in names}
    # The stored state, as it was: no __init__ or __post_init__ may recompute or reject what was gathered.
    obj = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj
