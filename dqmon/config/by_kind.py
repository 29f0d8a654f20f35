"""Config values whose model is chosen by a registered kind, validated like any other field.

A check entry (`- freshness: {...}`) and a source (`source: {kind: kafka, ...}`) name a kind; the
model that validates the rest is whatever the kind's registry holds at validation time, so a
plug-in registered at start-up validates exactly like a built-in, and `dqmon schema` lists it.

pydantic fixes a field's schema when the model class is built, which is before plug-ins load.
So the field is validated by a function that looks the kind up and validates the body with its
model; the body's own errors travel out in a `by_kind` error whose context holds them, and
`expand_errors` puts them back at their full location so the loader reports file:line of the
exact key, as it does for built-in fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from dqmon.registry import Registry, UnknownKind

BY_KIND_ERROR = "by_kind"


@dataclass(frozen=True)
class KindEntry:
    """A validated one-key entry: its kind and the model its body validated to."""

    kind: str
    spec: Any


def _body_errors(exc: ValidationError, prefix: tuple[str | int, ...]) -> PydanticCustomError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    return PydanticCustomError(
        BY_KIND_ERROR,
        "{reason}",
        {"reason": first["msg"], "errors": errors, "prefix": prefix},
    )


@dataclass(frozen=True)
class ByKind:
    """`Annotated[T, ByKind(registry, model_of)]`.

    Without `entry` the value is a mapping with a `kind` key (sources) and validates to the kind's
    model. With `entry` it is a mapping of exactly one key, the kind, whose value is the body
    (check entries), and validates to `entry(kind, body model)`.
    """

    registry: Registry[Any]
    model_of: Callable[[Any], type[BaseModel]]
    entry: type[KindEntry] | None = None

    @property
    def tagged(self) -> bool:
        return self.entry is None

    def _model(self, kind: Any) -> type[BaseModel]:
        try:
            return self.model_of(self.registry.get(str(kind)))
        except UnknownKind as exc:
            raise PydanticCustomError("unknown_kind", "{reason}", {"reason": str(exc)}) from None

    def validate(self, value: Any) -> Any:
        if isinstance(value, BaseModel) or (self.entry is not None and isinstance(value, self.entry)):
            return value
        if not isinstance(value, Mapping):
            shape = "a mapping with a kind key" if self.tagged else "a mapping of one check kind"
            raise PydanticCustomError("by_kind_type", "expected {shape}", {"shape": shape})
        if self.tagged:
            if "kind" not in value:
                raise PydanticCustomError(
                    "by_kind_missing",
                    "give kind: one of {kinds}",
                    {"kinds": ", ".join(self.registry.kinds())},
                )
            model = self._model(value["kind"])
            try:
                return model.model_validate(dict(value))
            except ValidationError as exc:
                raise _body_errors(exc, ()) from None
        unknown = [k for k in value if k not in self.registry]
        if unknown:
            self._model(unknown[0])  # raises the unknown-kind error listing the valid kinds
        if len(value) != 1:
            raise PydanticCustomError(
                "by_kind_count",
                "a check entry has exactly one kind key, got {count}: write each check as its own list item",
                {"count": len(value)},
            )
        ((kind, body),) = value.items()
        model = self._model(kind)
        try:
            spec = model.model_validate({} if body is None else body)
        except ValidationError as exc:
            raise _body_errors(exc, (str(kind),)) from None
        assert self.entry is not None
        return self.entry(str(kind), spec)

    def _serialize(self, value: Any) -> Any:
        if isinstance(value, KindEntry):
            return {value.kind: value.spec.model_dump(by_alias=True, exclude_unset=True)}
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, exclude_unset=True)
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.validate,
            serialization=core_schema.plain_serializer_function_ser_schema(self._serialize),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        refs = {
            kind: handler(self.model_of(item).__pydantic_core_schema__)
            for kind, item in self.registry.items()
        }
        if self.tagged:
            return {"oneOf": list(refs.values())}
        return {
            "type": "object",
            "title": "CheckEntry",
            "description": "exactly one check kind, its spec as the value",
            "properties": refs,
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
        }


def expand_errors(exc: ValidationError) -> Iterator[ErrorDetails]:
    """The errors of `exc`, with errors of kind-chosen bodies at their full location."""
    for error in exc.errors(include_url=False, include_input=False):
        yield from _expand(error)


def _expand(error: ErrorDetails) -> Iterator[ErrorDetails]:
    ctx = error.get("ctx") or {}
    if error["type"] != BY_KIND_ERROR or "errors" not in ctx:
        yield error
        return
    outer = tuple(error["loc"])
    for inner in ctx["errors"]:
        nested = cast(ErrorDetails, {**inner, "loc": (*outer, *ctx["prefix"], *inner["loc"])})
        yield from _expand(nested)
