"""Protocol files (``config/benchmarks/*.yaml``): read, validate against their kind's schema, fill defaults.

Every protocol kind has one JSON-Schema in ``sslzoo/schemas/`` (:data:`SCHEMAS`), and every
default of a protocol value is stated there once. :func:`read_protocol` validates a file with it
(a violation raises :class:`~sslzoo.errors.SslzooError` naming the file and the key path, e.g.
``config/benchmarks/knn.yaml: temperature: -1 is less than or equal to the minimum of 0``) and
returns the file's own mapping beside a copy with the defaults filled; the loaders of the
benchmark modules build their dataclasses from the filled copy (:func:`build_dataclass`) and
keep in code only the checks a schema cannot express (one value bounded by another, a default
that is another key's value). :func:`schema_default` reads a default from a schema, for the
dataclasses that code and tests also build by hand.

The workflow validates every protocol file it uses with the same function before any job
(``workflow/rules/common.smk``), so this module imports nothing heavy.
"""

from __future__ import annotations

import copy
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from sslzoo.config import SCHEMA_DIR, resolve_ref, validate
from sslzoo.errors import SslzooError
from sslzoo.io import read_yaml

# protocol kind -> its schema: the kinds of the benchmark registry (sslzoo.benchmarks.registry.KINDS)
# and "features", the feature-extraction config (config key `features`)
SCHEMAS: dict[str, str] = {
    "linear": "linear.schema.yaml",
    "semi": "semi.schema.yaml",
    "knn": "knn.schema.yaml",
    "features": "features.schema.yaml",
    "svm": "svm.schema.yaml",
    "lowshot": "lowshot.schema.yaml",
    "det": "detection.schema.yaml",
    "seg": "segmentation.schema.yaml",
}


def schema_path(kind: str) -> Path:
    """The schema file of protocol ``kind`` (a key of :data:`SCHEMAS`)."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown protocol kind {kind!r}; the kinds are {sorted(SCHEMAS)}")
    return SCHEMA_DIR / SCHEMAS[kind]


def read_protocol(path: str | os.PathLike[str], kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the protocol file ``path`` of ``kind`` and validate it with the kind's schema.

    An empty file is an empty mapping (valid where the schema requires no key).

    Returns:
        ``(raw, filled)``: the file's mapping as written (what ``metrics.json`` records) and a
        deep copy of it with every schema default filled in.

    Raises:
        SslzooError: the file is missing, not YAML, not a mapping, or breaks the schema; the
            message names the file and the key path of every violation.
    """
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SslzooError(
            f"{path}: (top level): expected a mapping of {kind} protocol settings, got {type(raw).__name__}"
        )
    filled = validate(copy.deepcopy(raw), schema_path(kind), path, strict_integers=True)
    return raw, filled


def _as_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuples(item) for item in value)
    return value


def _node(schema: dict[str, Any]) -> dict[str, Any]:
    return resolve_ref(schema["$ref"]) if "$ref" in schema and "properties" not in schema else schema


def schema_default(kind: str, *keys: str) -> Any:
    """The schema default of the value at ``keys`` (``("model", "norm")``) of a ``kind`` protocol.

    Lists come back as tuples (the dataclasses hold tuples). ``KeyError`` when the schema states
    no default there (a bug of the caller, found at import).
    """
    node: dict[str, Any] = {"$ref": f"{SCHEMAS[kind]}#"}
    for key in keys:
        node = _node(node)["properties"][key]
    if "default" not in node and "$ref" in node:
        node = resolve_ref(node["$ref"])
    return copy.deepcopy(_as_tuples(node["default"]))


def build_dataclass(cls: type, mapping: dict[str, Any]) -> Any:
    """``cls(**mapping)`` for a validated, default-filled mapping, converted to the field types.

    A field annotated ``tuple[...]`` gets a tuple (of floats for ``tuple[float, ...]``), one
    annotated ``float`` a float (YAML ``1`` is an int); the others take the value as it is.
    """
    values: dict[str, Any] = {}
    for field in fields(cls):
        if field.name not in mapping:
            continue
        value, kind = mapping[field.name], str(field.type)
        if kind.startswith("tuple") and isinstance(value, list):
            convert = float if "float" in kind else int
            value = tuple(convert(item) for item in value)
        elif kind == "float" and isinstance(value, int):
            value = float(value)
        values[field.name] = value
    return cls(**values)
