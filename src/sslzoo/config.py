"""Model configs (``config/models/<name>.yaml``): read, validate against the schema, fill defaults.

The schema is ``sslzoo/schemas/model.schema.yaml`` (JSON-Schema 2020-12 written in YAML). A
config that does not match it raises :class:`~sslzoo.errors.SslzooError` naming the file, the
key path (``train.optimizer.lr``) and what the schema expects there. :func:`validate` is also
how the protocol files are checked (:mod:`sslzoo.benchmarks.protocol_files`); their schemas
share definitions through ``$ref`` to another file of ``sslzoo/schemas/``
(``protocol_common.schema.yaml#/$defs/gpus``), and a property whose schema is such a ``$ref``
takes the ``default`` of the definition.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sslzoo.errors import SslzooError
from sslzoo.io import read_yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
MODEL_SCHEMA = SCHEMA_DIR / "model.schema.yaml"


@cache
def _schema(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def resolve_ref(ref: str) -> dict[str, Any]:
    """The schema a ``$ref`` of the form ``<file in sslzoo/schemas>#/<json pointer>`` points at."""
    name, _, pointer = ref.partition("#")
    if not name:
        raise ValueError(f"$ref {ref!r}: name the schema file (<file>#/$defs/<name>) so it resolves anywhere")
    node: Any = _schema(SCHEMA_DIR / name)
    for part in filter(None, pointer.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _property_default(subschema: dict[str, Any]) -> tuple[bool, Any]:
    """(True, default) of a property's schema, following a ``$ref`` without a default of its own."""
    if "default" in subschema:
        return True, subschema["default"]
    if "$ref" in subschema:
        return _property_default(resolve_ref(subschema["$ref"]))
    return False, None


def _with_defaults(
    validator_class: type[jsonschema.protocols.Validator],
) -> type[jsonschema.protocols.Validator]:
    """A validator class that also writes each missing property's ``default`` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def fill_defaults(
        validator: jsonschema.protocols.Validator,
        properties: dict[str, Any],
        instance: Any,
        schema: dict[str, Any],
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                has_default, default = _property_default(subschema)
                if has_default and name not in instance:
                    instance[name] = copy.deepcopy(default)
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_defaults})


def _is_int(checker: Any, instance: Any) -> bool:
    """JSON-Schema ``integer`` without the floats of integral value (``2.0`` is not an integer here)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_DefaultFillingValidator = _with_defaults(jsonschema.Draft202012Validator)
_StrictDefaultFillingValidator = jsonschema.validators.extend(
    _DefaultFillingValidator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_int),
)


def _retrieve(uri: str) -> Resource:
    """A schema that another one ``$ref``s, read from its ``file://`` URI."""
    return Resource.from_contents(
        _schema(Path(url2pathname(urlparse(uri).path))), default_specification=DRAFT202012
    )


_REGISTRY: Registry = Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def key_path(error: jsonschema.ValidationError) -> str:
    """``train.optimizer.lr`` for an error at that key; ``(top level)`` for the document itself."""
    parts = [str(part) for part in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def validate(
    instance: Any, schema_path: Path, source: str | os.PathLike[str], *, strict_integers: bool = False
) -> Any:
    """Validate ``instance`` in place against the schema at ``schema_path``, filling defaults.

    ``strict_integers``: a float of integral value (``90.0``) is not an ``integer`` (JSON-Schema
    accepts it by default); the protocol files are checked so, as their loaders always did.

    Raises:
        SslzooError: listing every violation as ``<source>: <key path>: <what is expected>``.
    """
    schema = {**_schema(schema_path), "$id": schema_path.resolve().as_uri()}
    validator_class = _StrictDefaultFillingValidator if strict_integers else _DefaultFillingValidator
    validator = validator_class(schema, registry=_REGISTRY)
    errors = sorted(validator.iter_errors(instance), key=lambda err: [str(p) for p in err.absolute_path])
    if errors:
        lines = [f"{source}: {key_path(err)}: {err.message}" for err in errors]
        raise SslzooError(
            "\n".join(lines) + f"\n(schema: {schema_path}; fix the key(s) named above in {source})"
        )
    return instance


def load_model_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``config/models/<name>.yaml``, validate it and fill the schema's defaults.

    Returns:
        The config as a plain dict, e.g. ``cfg["train"]["accumulate"] == 1`` when not given.

    Raises:
        SslzooError: the file is missing, not YAML, or breaks the schema (message names the key).
    """
    cfg = read_yaml(path)
    if not isinstance(cfg, dict):
        raise SslzooError(f"{path}: (top level): expected a mapping of config keys, got {type(cfg).__name__}")
    validate(cfg, MODEL_SCHEMA, path)
    schedule = cfg["train"]["schedule"]
    steps = schedule.get("steps", [])
    if any(later <= earlier for earlier, later in zip(steps, steps[1:], strict=False)):
        raise SslzooError(f"{path}: train.schedule.steps: expected increasing epochs, got {steps}")
    if schedule["warmup_epochs"] > cfg["train"]["epochs"]:
        raise SslzooError(
            f"{path}: train.schedule.warmup_epochs: expected at most train.epochs "
            f"({cfg['train']['epochs']}), got {schedule['warmup_epochs']}"
        )
    check_snapshots(cfg, path)
    return cfg


def model_schema_default(*keys: str) -> Any:
    """The default the model schema states for the value at ``keys``, e.g. ``("backbone", "conv_init")``,
    for the classes that code and tests also build without a loaded config.

    ``KeyError`` when the schema states no default there (a bug of the caller, found at import).
    """
    node: dict[str, Any] = _schema(MODEL_SCHEMA)
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])


# Model config keys that do not change how the model trains: a resume state written under other
# values still resumes (snapshots: which epochs are kept, not what they hold).
NOT_TRAINING_KEYS = ("title", "reported", "extra_benchmarks", "snapshots")


def training_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The model config without :data:`NOT_TRAINING_KEYS`: what a run's weights depend on."""
    return {key: value for key, value in cfg.items() if key not in NOT_TRAINING_KEYS}


def snapshot_name(model: str, epoch: int) -> str:
    """The model name of ``model``'s checkpoint at ``epoch`` (config ``snapshots:``), e.g.
    ``triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k_ep940``."""
    return f"{model}_ep{int(epoch)}"


def snapshot_epochs(cfg: Mapping[str, Any]) -> list[int]:
    """The epochs whose checkpoints a run keeps (config ``snapshots:``), in the listed order."""
    return [int(snapshot["epoch"]) for snapshot in cfg.get("snapshots") or []]


def check_snapshots(cfg: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """What the schema cannot say about ``snapshots:``: each epoch within ``train.epochs``, and
    listed once. Raises :class:`SslzooError` naming ``path``, the entry and the fix."""
    epochs = int(cfg["train"]["epochs"])
    seen: set[int] = set()
    for index, epoch in enumerate(snapshot_epochs(cfg)):
        if epoch > epochs:
            raise SslzooError(
                f"{path}: snapshots[{index}].epoch: {epoch} is beyond train.epochs ({epochs}); the run "
                f"never reaches it: list an epoch from 1 to {epochs}, or remove the entry"
            )
        if epoch in seen:
            raise SslzooError(
                f"{path}: snapshots[{index}].epoch: epoch {epoch} is listed twice; merge the two entries "
                "into one (its extra_benchmarks and reported together)"
            )
        seen.add(epoch)


def section_with_defaults(
    given: Mapping[str, Any] | None, defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """A method's free-form config section (``views``, ``method_args``, ...) over its defaults.

    ``defaults`` overridden by ``given``; a key the method does not know raises
    :class:`SslzooError` naming ``where`` and the allowed keys (a typo never passes silently).
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SslzooError(f"model config {where}: unknown key(s) {unknown}; allowed: {sorted(defaults)}")
    return {**defaults, **given}
