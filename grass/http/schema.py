"""The HTTP boundary's types: a private cattrs converter and JSON Schemas from the same types.

Request and response bodies are attrs classes. One description serves both directions: the
converter structures a JSON body into the class (strict types, extra keys forbidden, a message
per field) and :func:`json_schema` describes the same class for OpenAPI. Constraints that the
schema must show (lengths, patterns, ranges) are declared with :func:`text`, :func:`integer` and
:func:`strings`, which add both the attrs validator and the schema fragment, so the document and
the validation can never disagree.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from grass.errors import InvalidInput, ValidationFailed
from grass.jsontext import is_text

SCHEMA = "grass.schema"  # attrs field metadata key: the JSON Schema fragment of the field

#: Patterns of the ids that appear in paths (grass.ids): what the document promises and the
#: pipeline checks before a handler runs.
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
SHORT_ID_PATTERN = "^[A-Za-z0-9_-]{21}$"
SHA256_PATTERN = "^[0-9a-f]{64}$"

#: Printable text only: control characters (C0, DEL, C1) have no business in a name, and
#: PostgreSQL refuses NUL. The default pattern of :func:`text`.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class FieldInvalid(ValueError):
    """Raised by the field validators declared here; the message names the rule broken."""


def _fail(attribute: attrs.Attribute[Any], problem: str) -> FieldInvalid:
    return FieldInvalid(f"{attribute.name}: {problem}")


def text(
    *,
    max_length: int,
    min_length: int = 0,
    pattern: str | None = None,
    format: str | None = None,
    default: Any = attrs.NOTHING,
    optional: bool = False,
    printable: bool = True,
) -> Any:
    """A string field (``None`` allowed when ``optional``) with its constraints in the schema.

    Control characters are refused unless ``printable`` is false (a password is hashed, never
    stored nor shown); without a ``pattern`` of its own the field shows :data:`PRINTABLE`.
    Text that UTF-8 cannot encode (a lone surrogate) is always refused.
    """
    if printable and pattern is None:
        pattern = PRINTABLE
    compiled = re.compile(pattern) if pattern else None
    fragment: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length:
        fragment["minLength"] = min_length
    if pattern:
        fragment["pattern"] = pattern
    if format:
        fragment["format"] = format

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str):
            raise _fail(attribute, "must be a string")
        if not min_length <= len(value) <= max_length:
            raise _fail(attribute, f"must be {min_length} to {max_length} characters")
        if printable and _CONTROL.search(value):
            raise _fail(attribute, "must not contain control characters")
        if not is_text(value):  # bodies are checked when parsed; query strings here
            raise _fail(attribute, "must be UTF-8 text (a lone surrogate is not)")
        if compiled and not compiled.search(value):
            raise _fail(attribute, f"must match {pattern}")

    return attrs.field(default=default, validator=check, metadata={SCHEMA: fragment})


def integer(*, minimum: int, maximum: int, default: Any = attrs.NOTHING) -> Any:
    fragment = {"type": "integer", "minimum": minimum, "maximum": maximum}

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(attribute, "must be an integer")
        if not minimum <= value <= maximum:
            raise _fail(attribute, f"must be from {minimum} to {maximum}")

    return attrs.field(default=default, validator=check, metadata={SCHEMA: fragment})


def described(description: str, default: Any = attrs.NOTHING) -> Any:
    """A field whose schema is derived from its type, with a description for the reader."""
    return attrs.field(default=default, metadata={SCHEMA: {"description": description}})


# --- the converter --------------------------------------------------------------------------


def _strict(kind: type, label: str) -> Any:
    def structure(value: Any, target: Any) -> Any:
        if isinstance(target, type) and issubclass(target, enum.Enum):
            # A class hook also receives its subclasses: StrEnum is a str.
            return _enum(value, target)
        if type(value) is not kind:
            raise TypeError(f"must be {label}")
        return value

    return structure


def _number(value: Any, _: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError("must be a number")
    return float(value)


def _datetime(value: Any, _: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError("must be an RFC 3339 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError("must carry a timezone offset")
    return parsed.astimezone(dt.UTC)


_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def _time(value: Any, _: Any) -> dt.time:
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError("must be a local time HH:MM")
    return dt.time.fromisoformat(value)


def _enum(value: Any, kind: type[enum.Enum]) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise ValueError(f"must be one of {choices}") from None


def _collection(value: Any, kind: Any) -> Any:
    if not isinstance(value, list):
        raise TypeError("must be an array")
    origin = typing.get_origin(kind)
    (item,) = typing.get_args(kind)[:1]
    items = [converter.structure(v, item) for v in value]
    if origin is frozenset:
        if len(set(items)) != len(items):
            raise ValueError("must not repeat an item")
        return frozenset(items)
    return tuple(items) if origin is tuple else items


def _time_text(value: dt.time) -> str:
    return value.strftime("%H:%M")


_COLLECTIONS: tuple[Any, ...] = (list, tuple, frozenset)


def _origin(kind: Any) -> Any:
    return typing.get_origin(kind) or kind


def _make() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(bool, _strict(bool, "true or false"))
    conv.register_structure_hook(float, _number)
    conv.register_structure_hook(dt.datetime, _datetime)
    conv.register_structure_hook(dt.time, _time)
    conv.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum
    )
    conv.register_structure_hook_func(lambda t: typing.get_origin(t) in _COLLECTIONS, _collection)
    conv.register_unstructure_hook(dt.datetime, lambda v: v.isoformat())
    conv.register_unstructure_hook(dt.time, _time_text)
    conv.register_unstructure_hook_func(
        lambda t: _origin(t) is frozenset,
        lambda v: sorted(converter.unstructure(x) for x in v),
    )
    conv.register_unstructure_hook_func(
        lambda t: _origin(t) is tuple,
        lambda v: [converter.unstructure(x) for x in v],
    )
    return conv


converter = _make()


def field_problems(exc: BaseException) -> dict[str, str]:
    fields: dict[str, str] = {}
    if isinstance(exc, cattrs.BaseValidationError):
        for line in cattrs.transform_error(exc, path="$", format_exception=_format):
            message, _, path = line.rpartition(" @ ")
            if message.startswith("extra fields found"):
                for name in message.partition("(")[2].rstrip(")").split(", "):
                    fields[_join(path, name)] = "unknown field"
                continue
            name, _, problem = message.partition(": ")
            if problem and name.isidentifier():
                # A field validator ran in the class's __init__: "name: problem" at the class.
                fields[_join(path, name)] = problem
                continue
            fields[path.removeprefix("$").removeprefix(".") or "body"] = message
    return fields


def _join(path: str, name: str) -> str:
    base = path.removeprefix("$").removeprefix(".")
    return f"{base}.{name}" if base else name


def _format(exc: BaseException, kind: Any) -> str:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"extra fields found ({', '.join(sorted(exc.extra_fields))})"
    if isinstance(exc, KeyError):
        return "required"
    if isinstance(exc, ValueError | TypeError):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def structure(data: Any, kind: type[Any], *, what: str = "body") -> Any:
    """Build ``kind`` from decoded JSON, or raise a 422 whose details name each bad field."""
    if attrs.has(kind) and not isinstance(data, Mapping):
        raise InvalidInput(f"the {what} must be a JSON object")
    try:
        return converter.structure(data, kind)
    except cattrs.BaseValidationError as exc:
        fields = field_problems(exc)
    except (FieldInvalid, ValidationFailed) as exc:
        # A validator that looks at several fields at once (attrs __attrs_post_init__ or the
        # domain's checks) raises after the fields were structured.
        field = getattr(exc, "field", None) or str(exc).partition(":")[0] or what
        message = str(exc).partition(": ")[2] or str(exc)
        fields = {field: message}
    except (ValueError, TypeError) as exc:
        fields = {what: str(exc)}
    summary = "; ".join(f"{k}: {v}" for k, v in fields.items())
    raise ValidationFailed(f"invalid {what}: {summary}", details={"fields": fields})


def field_errors(exc: ValidationFailed) -> ValidationFailed:
    """``exc`` with its details in the one 422 shape, ``{"fields": {name: problem}}``.

    Errors built here already have it; a domain validator's ``{"field", "problem"}``
    (grass.domain._checks.InvalidModel) is folded into it; any other 422 names no field.
    """
    details = dict(exc.details)
    fields = details.pop("fields", None)
    field, problem = details.pop("field", None), details.pop("problem", None)
    if not isinstance(fields, Mapping):
        fields = {}
    fields = {str(k): str(v) for k, v in fields.items()}
    if isinstance(field, str) and field not in fields:
        fields[field] = str(problem) if problem is not None else exc.message
    exc.details = {**details, "fields": fields}
    return exc


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


# --- JSON Schema (OpenAPI 3.1 dialect) -------------------------------------------------------


class Schemas:
    """Collects the named component schemas while describing types."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def of(self, kind: Any) -> dict[str, Any]:
        if kind is type(None):
            return {"type": "null"}
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            options = [self.of(arg) for arg in typing.get_args(kind)]
            return {"anyOf": options}
        origin = typing.get_origin(kind)
        if origin in (list, tuple, frozenset):
            schema: dict[str, Any] = {"type": "array", "items": self.of(typing.get_args(kind)[0])}
            if origin is frozenset:
                schema["uniqueItems"] = True
            return schema
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(typing.get_args(kind)[1])}
        if attrs.has(kind):
            return self._named(kind)
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return {"type": "string", "enum": [m.value for m in kind]}
        simple: dict[Any, dict[str, Any]] = {
            str: {"type": "string"},
            int: {"type": "integer"},
            float: {"type": "number"},
            bool: {"type": "boolean"},
            dt.datetime: {"type": "string", "format": "date-time"},
            dt.time: {"type": "string", "pattern": _TIME.pattern},
            typing.Any: {},
        }
        if kind in simple:
            return dict(simple[kind])
        raise TypeError(f"no JSON Schema for {kind!r}")

    def _named(self, kind: type[Any]) -> dict[str, Any]:
        name = kind.__name__
        ref = {"$ref": f"#/components/schemas/{name}"}
        if name in self.components:
            return ref
        self.components[name] = {}  # reserve the name first: types may refer to themselves
        hints = typing.get_type_hints(kind)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(kind):
            schema = self.of(hints[field.name])
            extra = field.metadata.get(SCHEMA)
            if extra:
                schema = _merge_field(schema, extra)
            properties[field.name] = schema
            if field.default is attrs.NOTHING:
                required.append(field.name)
        self.components[name] = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": bool(getattr(kind, "ALLOWS_EXTRA_KEYS", False)),
        }
        if kind.__doc__:
            self.components[name]["description"] = " ".join(kind.__doc__.split())
        return ref


def _merge_field(schema: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    if "anyOf" in schema and "type" in extra:
        # An optional constrained string: the constraints apply to the string branch.
        branches = [
            {**branch, **extra} if branch.get("type") == extra["type"] else branch
            for branch in schema["anyOf"]
        ]
        return {"anyOf": branches}
    return {**schema, **extra}


def query_params(kind: type[Any], schemas: Schemas, where: str = "query") -> list[dict[str, Any]]:
    """OpenAPI parameters ``in: query`` (or ``path``) for an attrs class of fields."""
    hints = typing.get_type_hints(kind)
    params = []
    for field in attrs.fields(kind):
        schema = schemas.of(hints[field.name])
        if field.metadata.get(SCHEMA):
            schema = _merge_field(schema, field.metadata[SCHEMA])
        params.append(
            {
                "name": field.name,
                "in": where,
                "required": where == "path" or field.default is attrs.NOTHING,
                "schema": schema,
            }
        )
    return params
