"""The decoder contract: the value bytes of a whole micro-batch in, one DataFrame out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt
import polars as pl

from dqmon.config.models import KafkaSource, SchemaRegistry


@dataclass(frozen=True)
class Decoded:
    """Rows decoded from a batch; `kept[i]` says whether input record i produced a row.

    Rows of `df` are the kept records in input order, so per-record metadata (partition,
    offset, ...) lines up with `metadata[kept]`. `errors` counts the others by bounded reason.
    """

    df: pl.DataFrame
    kept: npt.NDArray[np.bool_]
    errors: Mapping[str, int] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class Decoder(Protocol):
    """Decodes record values; never raises on bad records (they are counted by reason)."""

    @property
    def reasons(self) -> tuple[str, ...]: ...

    def decode(self, values: Sequence[bytes]) -> Decoded: ...


class DecoderFactory(Protocol):
    """What the decoder registry holds (dqmon.registry.DECODERS): a decoder class.

    A format is one module: the class, with `@DECODERS.add(name)`. `reasons` is the bounded
    vocabulary of its error counts (the `reason` label of dqmon_decode_errors_total).
    """

    reasons: tuple[str, ...]
    needs_schema_registry: bool

    def from_source(self, source: KafkaSource) -> Decoder: ...


def in_input_order(frames: Sequence[tuple[npt.NDArray[Any], pl.DataFrame]]) -> pl.DataFrame:
    """Concatenate decoded pieces, each with its records' input indices, back into input order.

    Rows must line up with `Decoded.kept`; pieces may interleave (Avro groups by schema id).
    """
    pieces = [(idx, df) for idx, df in frames if idx.size]
    if not pieces:
        return pl.DataFrame()
    if len(pieces) == 1:
        return pieces[0][1]
    order = np.argsort(np.concatenate([idx for idx, _ in pieces]), kind="stable")
    return pl.concat([df for _, df in pieces], how="diagonal_relaxed")[order]


def schema_registry_client(config: SchemaRegistry) -> Any:
    """A Confluent Schema Registry client for the registry formats (Avro, Protobuf, JSON Schema).

    Imported here, not at module level: the client pulls in an HTTP/auth stack that only those
    formats need, and decoder modules are imported whenever a checks file names a format.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    conf: dict[str, Any] = {"url": config.url}
    if config.basic_auth is not None:
        conf["basic.auth.user.info"] = config.basic_auth.get_secret_value()
    return SchemaRegistryClient(conf)


class RegistryDecoder:
    """Base of the formats whose schemas come from a Schema Registry (Avro, Protobuf, JSON Schema):
    built from the source's `schema_registry:` (the config model requires it for these formats)."""

    needs_schema_registry: ClassVar[bool] = True

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    @classmethod
    def from_config(cls, config: SchemaRegistry) -> Self:
        return cls(schema_registry_client(config))

    @classmethod
    def from_source(cls, source: KafkaSource) -> Self:
        assert source.schema_registry is not None
        return cls.from_config(source.schema_registry)
