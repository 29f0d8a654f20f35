"""A registered Protobuf schema → a descriptor pool, and a message-index path → a message class.

The registry is asked for the schema in the `serialized` format (a base64 FileDescriptorProto,
what Confluent's own deserializers ask for), so a current Schema Registry needs no .proto parser
here. A registry that answers with .proto text instead (older versions, other implementations)
has the text compiled in-process by protoc from `grpcio-tools` (the `protobuf` extra), imported
only then. References are followed through the registry (`subject`/`version`, recursively);
imports of Google's well-known types, `google/type/*` and Confluent's `confluent/*` files are
served from the protobuf runtime's own descriptors, like Confluent's clients do.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError

ROOT_NAME = "dqmon_registered_schema.proto"  # the root file's name in its own pool
_MAX_REFERENCE_DEPTH = 32

_BUILTIN_MODULES = (
    "google.protobuf.any_pb2",
    "google.protobuf.api_pb2",
    "google.protobuf.descriptor_pb2",
    "google.protobuf.duration_pb2",
    "google.protobuf.empty_pb2",
    "google.protobuf.field_mask_pb2",
    "google.protobuf.source_context_pb2",
    "google.protobuf.struct_pb2",
    "google.protobuf.timestamp_pb2",
    "google.protobuf.type_pb2",
    "google.protobuf.wrappers_pb2",
    "google.type.calendar_period_pb2",
    "google.type.color_pb2",
    "google.type.date_pb2",
    "google.type.datetime_pb2",
    "google.type.dayofweek_pb2",
    "google.type.decimal_pb2",
    "google.type.expr_pb2",
    "google.type.fraction_pb2",
    "google.type.interval_pb2",
    "google.type.latlng_pb2",
    "google.type.money_pb2",
    "google.type.month_pb2",
    "google.type.postal_address_pb2",
    "google.type.quaternion_pb2",
    "google.type.timeofday_pb2",
    "confluent_kafka.schema_registry.confluent.meta_pb2",
    "confluent_kafka.schema_registry.confluent.type.decimal_pb2",
    "confluent_kafka.schema_registry.confluent.types.decimal_pb2",
)


class ProtoSchemaError(Exception):
    """A registered schema that cannot be turned into descriptors (logged, counted unknown_schema)."""


def _builtin_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for name in _BUILTIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # googleapis-common-protos or confluent types absent: not servable
            continue
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        files[proto.name] = proto
    return files


_builtins: dict[str, descriptor_pb2.FileDescriptorProto] | None = None
_builtins_lock = threading.Lock()


def builtin_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    global _builtins
    with _builtins_lock:
        if _builtins is None:
            _builtins = _builtin_files()
        return _builtins


@dataclass(frozen=True)
class RegisteredFile:
    """One file of a registered schema: its import name and either descriptor or .proto text."""

    name: str
    proto: descriptor_pb2.FileDescriptorProto | None
    text: str | None


def as_file(name: str, schema_str: str) -> RegisteredFile:
    """A registry answer is base64 FileDescriptorProto (format=serialized) or .proto text."""
    try:
        raw = base64.b64decode(schema_str.encode("ascii"), validate=True)
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
    except (binascii.Error, UnicodeEncodeError, ValueError, DecodeError):
        return RegisteredFile(name, None, schema_str)
    if not proto.message_type and not proto.enum_type and not proto.dependency:
        return RegisteredFile(name, None, schema_str)  # text that happened to be valid base64
    proto.name = name
    return RegisteredFile(name, proto, None)


def fetch_files(registry: Any, schema_id: int) -> list[RegisteredFile]:
    """The root schema (last) and everything it references, dependencies first."""
    root = registry.get_schema(schema_id, fmt="serialized")
    if (root.schema_type or "AVRO").upper() != "PROTOBUF":
        raise ProtoSchemaError(f"schema {schema_id} is {root.schema_type}, not PROTOBUF")
    files: dict[str, RegisteredFile] = {}
    _follow(registry, root.references or (), files, depth=0)
    files[ROOT_NAME] = as_file(ROOT_NAME, root.schema_str)
    return list(files.values())


def _follow(registry: Any, references: Iterable[Any], files: dict[str, RegisteredFile], depth: int) -> None:
    if depth > _MAX_REFERENCE_DEPTH:
        raise ProtoSchemaError("schema references nest too deep")
    for ref in references:
        if ref.name in files or ref.name in builtin_files():
            continue
        registered = registry.get_version(ref.subject, ref.version, fmt="serialized")
        _follow(registry, registered.schema.references or (), files, depth + 1)
        files[ref.name] = as_file(ref.name, registered.schema.schema_str)


def compile_text(files: Sequence[RegisteredFile]) -> list[descriptor_pb2.FileDescriptorProto]:
    """Compile the .proto texts among `files` with protoc (grpcio-tools), in-process.

    Files already in descriptor form and the built-ins are given to protoc as a descriptor set,
    so a text file may import them.
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise ProtoSchemaError(
            "the registry returned .proto text; compiling it needs the protobuf extra (grpcio-tools)"
        ) from exc
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    known = descriptor_pb2.FileDescriptorSet()
    for proto in builtin_files().values():
        known.file.append(proto)
    known.file.extend(f.proto for f in files if f.proto is not None)
    with tempfile.TemporaryDirectory(prefix="dqmon-proto-") as tmp:
        for f in files:
            if f.text is not None:
                path = os.path.join(tmp, f.name)
                if not os.path.realpath(path).startswith(os.path.realpath(tmp) + os.sep):
                    raise ProtoSchemaError(f"reference name {f.name!r} leaves the schema directory")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as out:
                    out.write(f.text)
        known_path, out_path = os.path.join(tmp, ".known.pb"), os.path.join(tmp, ".out.pb")
        with open(known_path, "wb") as out:
            out.write(known.SerializeToString())
        args = [
            "protoc",
            f"--proto_path={tmp}",
            f"--proto_path={include}",
            f"--descriptor_set_in={known_path}",
            f"--descriptor_set_out={out_path}",
            *[f.name for f in files if f.text is not None],
        ]
        with _protoc_lock:  # protoc's main keeps global state
            status = protoc.main(args)
        if status != 0:
            raise ProtoSchemaError("protoc could not compile the registered .proto text")
        with open(out_path, "rb") as src:
            compiled = descriptor_pb2.FileDescriptorSet.FromString(src.read())
    return list(compiled.file)


_protoc_lock = threading.Lock()


@dataclass(frozen=True)
class ProtoSchema:
    """A registered schema's descriptor pool and its root file's top-level message names."""

    pool: DescriptorPool
    root: descriptor_pb2.FileDescriptorProto

    def message(self, path: Sequence[int]) -> Descriptor | None:
        """The message a message-index path names, or None when the schema has no such message."""
        messages: Sequence[descriptor_pb2.DescriptorProto] = self.root.message_type
        names: list[str] = [self.root.package] if self.root.package else []
        for index in path:
            if not 0 <= index < len(messages):
                return None
            names.append(messages[index].name)
            messages = messages[index].nested_type
        descriptor: Descriptor = self.pool.FindMessageTypeByName(".".join(names))
        return descriptor

    def message_class(self, path: Sequence[int]) -> tuple[Descriptor, type[Any]] | None:
        """The named message's descriptor and generated class (built once per schema and path)."""
        descriptor = self.message(path)
        return None if descriptor is None else (descriptor, message_factory.GetMessageClass(descriptor))


def build(files: Sequence[RegisteredFile]) -> ProtoSchema:
    """A fresh pool with the built-ins and every file of the schema, dependencies first."""
    protos = {f.name: f.proto for f in files if f.proto is not None}
    if any(f.text is not None for f in files):
        protos.update({p.name: p for p in compile_text(files)})
    everything = {**builtin_files(), **protos}
    pool = DescriptorPool()
    added: set[str] = set()

    def add(name: str, trail: tuple[str, ...]) -> None:
        if name in added:
            return
        if name in trail or name not in everything:
            raise ProtoSchemaError(f"import {name!r} is missing or circular")
        for dependency in everything[name].dependency:
            add(dependency, (*trail, name))
        pool.Add(everything[name])
        added.add(name)

    try:
        add(ROOT_NAME, ())
    except ProtoSchemaError:
        raise
    except Exception as exc:
        raise ProtoSchemaError(f"descriptor pool rejected the schema: {type(exc).__name__}") from exc
    return ProtoSchema(pool, everything[ROOT_NAME])
