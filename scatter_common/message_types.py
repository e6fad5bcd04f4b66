"""Application message types by full name, with no generated code needed: the one resolver.

Every tool that turns a name such as ``stock.v1.StockRequest`` into a
message class uses ``MessageTypes``: ``scatter query``, the conformance
kit, and anything else that must read or write an application's payloads
without being that application (the root never does: it forwards bytes).
A name is looked up, in this order, in:

1. protobuf's default pool: the modules already imported, among them those
   given in ``TypeSources.imports`` (Python applications);
2. the ``.proto`` files of ``TypeSources.proto_files``, compiled when the
   resolver is built (grpcio-tools' protoc, to a FileDescriptorSet; imports
   are found in ``proto_paths`` and in the well-known types protoc ships);
3. the generated modules of the name's own package under ``protos``: a type
   of package ``probe.v1`` lives in ``protos/probe/v1/*_pb2.py``, because
   the package path matches the package (docs/design.md). Only those are
   imported, never every module under ``protos``: an application's protos
   cost nothing to a tool that does not use them, and a broken one cannot
   break an unrelated command;
4. the server reflection of ``TypeSources.reflection`` (a leaf or a merge in
   any language that serves reflection for its own messages), asked once
   per name.

Rules: types from sources 2 and 4 live in one private pool per resolver,
never in the default pool, so a resolver cannot change what another part of
the process decodes. Building a resolver fails (``MessageTypeError``, its
message saying what to fix) only for sources that are wrong on their face:
a module that does not import, a ``.proto`` that does not compile (protoc's
own message), a file that does not exist. A name no source defines is not
an error here: ``find`` answers None and ``explain_unknown`` says what was
searched and why each source did not have it (a server without reflection
included), for the caller to print. A name reflection failed to provide is
not asked again by the same resolver (a run's time stays bounded by the
number of names); a long-lived process that must see new types builds a
new resolver.

The reflection client (``Reflection``) asks ``grpc.reflection.v1`` first and
``grpc.reflection.v1alpha`` when the server answers UNIMPLEMENTED (grpcurl's
order), and keeps the version that answered: Python's grpcio-reflection and
grpc++ 1.51 serve only v1alpha, grpc-go, grpc-java and Node's
``@grpc/reflection`` both. The two versions have the same messages field
for field, so one set of message classes serves both.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message, message_factory
from google.protobuf.descriptor_database import DescriptorDatabase
from grpc_reflection.v1alpha import reflection_pb2

import protos
from scatter_common.tls import ClientTls, sync_channel

__all__ = [
    "REFLECTION_VERSIONS",
    "MessageClass",
    "MessageTypeError",
    "MessageTypes",
    "Reflection",
    "TypeSources",
    "compile_protos",
    "import_modules",
    "modules_for",
    "payload_message_to_dict",
    "pool_of",
]

MessageClass = type[message.Message]

_PROTOS = Path(protos.__file__).resolve().parent
# The well-known types a request or an answer may use (google/protobuf/*.proto), imported on demand.
_WELL_KNOWN = ("any", "duration", "timestamp", "wrappers", "struct", "empty", "field_mask")
_WELL_KNOWN_FILES = frozenset(f"google/protobuf/{name}.proto" for name in _WELL_KNOWN)
# Reflection services, newest first: v1 is the standard, v1alpha what older servers serve only.
REFLECTION_VERSIONS = ("grpc.reflection.v1", "grpc.reflection.v1alpha")
# Files fetched by name for one symbol, at most: a server that keeps naming new imports cannot loop us.
_MAX_FILES = 256
# Names remembered as not reflected, at most: a client sending new unknown names cannot grow it.
_MAX_NOT_REFLECTED = 1024
# protoc starts in a fresh interpreter; a minute covers a cold start on a busy 2-core machine.
_PROTOC_TIMEOUT = 60.0


class MessageTypeError(ValueError):
    """A type source that cannot be used: the message names it and says what to fix."""


@dataclass(frozen=True)
class TypeSources:
    """Where application message types come from, besides the generated code of their package.

    ``proto_paths`` are the folders imports are resolved in (protoc's
    ``-I``); when empty, each ``.proto`` file's own folder. ``reflection`` is
    the address of a leaf or a merge whose server reflection knows the
    types (``host:port`` or ``unix:/path``); empty: no reflection.
    """

    imports: tuple[str, ...] = ()
    proto_files: tuple[str, ...] = ()
    proto_paths: tuple[str, ...] = ()
    reflection: str = ""


def import_modules(names: Iterable[str]) -> None:
    """Import Python modules that define message types; a MessageTypeError names the one that fails."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MessageTypeError(f"cannot import the module {name!r}: {exc}") from None


def modules_for(full_name: str) -> list[str]:
    """The generated modules that can define ``full_name``: those of its package under ``protos``, or []."""
    *scopes, _ = full_name.split(".")
    if not scopes or not all(part.isidentifier() for part in scopes):
        return []
    if scopes[:2] == ["google", "protobuf"]:
        return [f"google.protobuf.{name}_pb2" for name in _WELL_KNOWN]
    # The longest prefix that is a folder: a nested type (pkg.v1.Outer.Inner) lives in pkg/v1 too.
    for end in range(len(scopes), 0, -1):
        folder = _PROTOS.joinpath(*scopes[:end])
        if folder.is_dir():
            package = ".".join(["protos", *scopes[:end]])
            return [f"{package}.{path.stem}" for path in sorted(folder.glob("*_pb2.py"))]
    return []


def _protoc_include() -> Path:
    """The well-known .proto files grpcio-tools ships (google/protobuf/*.proto), found without importing it."""
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or not spec.submodule_search_locations:
        raise MessageTypeError("compiling .proto files needs grpcio-tools: pip install grpcio-tools")
    return Path(next(iter(spec.submodule_search_locations))) / "_proto"


def compile_protos(files: Iterable[str], paths: Iterable[str] = ()) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``.proto`` files with their imports into a FileDescriptorSet (dependencies first).

    ``paths`` are the import folders (protoc's ``-I``); without any, each
    file's own folder. protoc runs in a child interpreter, so its messages
    can be shown: a file that does not compile is a MessageTypeError
    carrying protoc's message.
    """
    given, given_paths = list(files), list(paths)
    for file in given:
        if not Path(file).is_file():
            raise MessageTypeError(f"no such .proto file: {file!r}")
    for folder in given_paths:
        if not Path(folder).is_dir():
            raise MessageTypeError(f"no such import folder (proto path): {folder!r}")
    # Absolute, both: protoc maps each file to its name under the import folder that holds it.
    sources = [Path(f).resolve() for f in given]
    folders = [Path(p).resolve() for p in given_paths] or list(dict.fromkeys(p.parent for p in sources))
    with tempfile.TemporaryDirectory(prefix="scatter-protoc-") as tmp:
        out = Path(tmp) / "descriptors.pb"
        argv = [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{f}" for f in folders), f"-I{_protoc_include()}"]
        argv += [f"--descriptor_set_out={out}", "--include_imports", *map(str, sources)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=_PROTOC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise MessageTypeError(f"protoc did not finish within {_PROTOC_TIMEOUT:g} s") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            if "No module named grpc_tools" in said:
                said = "compiling .proto files needs grpcio-tools: pip install grpcio-tools"
            elif "File not found" in said:
                shown = ", ".join(map(str, folders))
                said += (
                    f"\n(imports are looked up in the proto paths, here {shown}: add the folder they are relative to)"
                )
            raise MessageTypeError(f"the .proto files do not compile:\n{said}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Files(DescriptorDatabase):
    """The private pool's files (compiled, reflected), plus the well-known ones a server may leave out."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def add_once(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        if file.name not in self.names:
            self.names.add(file.name)
            self.Add(file)

    def knows(self, name: str) -> bool:
        return name in self.names or name in _WELL_KNOWN_FILES

    def FindFileByName(self, name: str) -> descriptor_pb2.FileDescriptorProto:  # protobuf's API name
        if name not in self.names and name in _WELL_KNOWN_FILES:
            # protobuf's own copy, from its generated module: in the default pool only once imported.
            importlib.import_module(f"google.protobuf.{Path(name).stem}_pb2")
            proto = descriptor_pb2.FileDescriptorProto()
            descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
            self.add_once(proto)
        result: descriptor_pb2.FileDescriptorProto = super().FindFileByName(name)
        return result


class Reflection:
    """A server reflection client on ``channel``: v1 first, v1alpha when v1 is UNIMPLEMENTED.

    Every method raises ``grpc.RpcError`` when no version answers (the
    error of the last one tried); ``version`` is the service that answered.
    """

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout
        self.version = ""

    def _ask(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        versions = [self.version] if self.version else list(REFLECTION_VERSIONS)
        for i, version in enumerate(versions):
            call = self._channel.stream_stream(
                f"/{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            try:
                responses = call(iter([request]), timeout=self._timeout)
                answer = reflection_pb2.ServerReflectionResponse()
                for response in responses:
                    responses.cancel()  # one request, one answer: do not wait for the server to end the stream
                    answer = response
                    break
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.UNIMPLEMENTED and i + 1 < len(versions):
                    continue
                raise
            self.version = version
            return answer
        raise AssertionError("unreachable: the last version raises or returns")

    def services(self) -> list[str]:
        """The service names the server lists."""
        response = self._ask(reflection_pb2.ServerReflectionRequest(list_services=""))
        return [str(service.name) for service in response.list_services_response.service]

    def _files(self, response: reflection_pb2.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
        return [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in response.file_descriptor_response.file_descriptor_proto
        ]

    def files_for(self, symbol: str) -> list[descriptor_pb2.FileDescriptorProto]:
        """The file defining ``symbol`` and the files it imports ([] when the server does not know it)."""
        return self._files(self._ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)))

    def file_named(self, name: str) -> list[descriptor_pb2.FileDescriptorProto]:
        """The file ``name`` (a path such as ``stock/v1/item.proto``) and what the server sends with it."""
        return self._files(self._ask(reflection_pb2.ServerReflectionRequest(file_by_filename=name)))


class MessageTypes:
    """Message classes by full name, from the sources of ``TypeSources`` (see the module's rules).

    Build it once per run (it compiles the ``.proto`` files and imports the
    modules at once, raising ``MessageTypeError``), then ``find`` names;
    ``close`` (or ``with``) closes the reflection channel. ``tls`` is how to
    reach the reflection address; ``timeout`` bounds each reflection call.
    Not thread-safe: one thread at a time. ``find`` may block (a reflection
    call, a module import): a server on an event loop resolves its types at
    start, or calls ``find`` in a worker thread; a name once found costs a
    dict lookup.
    """

    def __init__(self, sources: TypeSources = TypeSources(), *, tls: ClientTls | None = None, timeout: float = 5.0):
        self.sources = sources
        self._tls = tls
        self._timeout = timeout
        self._files = _Files()
        self._pool = descriptor_pool.DescriptorPool(self._files)
        self._found: dict[str, MessageClass] = {}
        self._not_reflected: dict[str, str] = {}  # name -> why reflection did not give it
        self._channel: grpc.Channel | None = None
        self._reflection: Reflection | None = None
        import_modules(sources.imports)
        if sources.proto_files:
            for file in compile_protos(sources.proto_files, sources.proto_paths).file:
                self._files.add_once(file)

    def __enter__(self) -> MessageTypes:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._reflection = None

    @property
    def pool(self) -> descriptor_pool.DescriptorPool:
        """The private pool of compiled and reflected types (for json_format's ``descriptor_pool``)."""
        return self._pool

    def find(self, full_name: str) -> MessageClass | None:
        """The class of the message ``full_name``, or None when no source defines it."""
        found = self._found.get(full_name)
        if found is None:
            found = self._lookup(full_name)
            if found is not None:
                self._found[full_name] = found
        return found

    def _lookup(self, name: str) -> MessageClass | None:
        found = _class_in(descriptor_pool.Default(), name)
        if found is None:
            found = _class_in(self._pool, name)  # compiled, or reflected earlier
        if found is None:
            modules = modules_for(name)
            if modules:
                import_modules(modules)
                found = _class_in(descriptor_pool.Default(), name)
        if found is None and self.sources.reflection and name not in self._not_reflected:
            found = self._reflect(name)
        return found

    def _reflect(self, name: str) -> MessageClass | None:
        if self._reflection is None:
            try:
                self._channel = sync_channel(self.sources.reflection, self._tls)
            except ValueError as exc:  # unreadable TLS files
                self._remember_unknown(name, str(exc))
                return None
            self._reflection = Reflection(self._channel, self._timeout)
        try:
            files = self._reflection.files_for(name)
            self._fetch_imports(files)
        except grpc.RpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.UNIMPLEMENTED:
                why = f"it serves no server reflection ({' or '.join(REFLECTION_VERSIONS)} is UNIMPLEMENTED)"
            else:
                why = f"its reflection failed with {code.name}: {exc.details() or 'no details'}"
            self._remember_unknown(name, why)
            return None
        if not files:
            self._remember_unknown(name, "its reflection does not know it")
            return None
        found = _class_in(self._pool, name)
        if found is None:
            self._remember_unknown(name, "its reflection sent files that do not define it (or do not link)")
        return found

    def _remember_unknown(self, name: str, why: str) -> None:
        """Remember why reflection did not give ``name`` (not asked again); forget all past the bound."""
        if len(self._not_reflected) >= _MAX_NOT_REFLECTED:
            self._not_reflected.clear()
        self._not_reflected[name] = why

    def _fetch_imports(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        """Add ``files``, then fetch by name every import the server left out (most send them all)."""
        assert self._reflection is not None
        pending = list(files)
        fetched = 0
        while pending:
            file = pending.pop()
            self._files.add_once(file)
            for dependency in file.dependency:
                if not self._files.knows(dependency) and all(p.name != dependency for p in pending):
                    fetched += 1
                    if fetched > _MAX_FILES:
                        return
                    pending.extend(self._reflection.file_named(dependency))

    def explain_unknown(self, full_name: str) -> str:
        """Why ``find(full_name)`` is None: every source searched, and what each said."""
        searched = ["the generated code of its package under 'protos'"]
        if self.sources.imports:
            searched.append(f"the modules {list(self.sources.imports)}")
        if self.sources.proto_files:
            searched.append(f"the .proto files {list(self.sources.proto_files)}")
        if self.sources.reflection:
            why = self._not_reflected.get(full_name, "not asked")
            searched.append(f"the server reflection of {self.sources.reflection} ({why})")
        return f"unknown message type {full_name!r}: not in " + ", nor in ".join(searched)


def pool_of(cls: MessageClass) -> descriptor_pool.DescriptorPool:
    """The pool that defines ``cls``: json_format's ``descriptor_pool`` for the Any fields inside it."""
    # The stubs type it as protobuf's class or upb's twin of it; json_format takes either.
    return cast(descriptor_pool.DescriptorPool, cls.DESCRIPTOR.file.pool)


def payload_message_to_dict(
    msg: message.Message, cls: MessageClass | None, *, with_defaults: bool = False
) -> dict[str, Any]:
    """``msg`` (a message with an Any field ``payload``) in protobuf's JSON mapping.

    ``cls`` is the payload's class when some source defines it (None if not):
    the payload is then decoded. Otherwise, or when an Any inside it is of a
    type found nowhere, the payload stays encoded as ``{"@type": TYPE_URL,
    "value_base64": BYTES}`` and the rest of ``msg`` is decoded as usual.
    """
    if cls is not None:
        try:
            return json_format.MessageToDict(msg, with_defaults, descriptor_pool=pool_of(cls))
        except (TypeError, KeyError, ValueError):  # an Any inside it of a type found nowhere
            pass
    payload = getattr(msg, "payload")  # noqa: B009 (typed as any Message: the stubs know no field)
    rest = type(msg)()
    rest.CopyFrom(msg)
    rest.ClearField("payload")
    document = json_format.MessageToDict(rest, with_defaults)
    if payload.type_url:
        encoded = {"@type": payload.type_url, "value_base64": base64.b64encode(payload.value).decode()}
        document = {"payload": encoded, **document}
    return document


def _class_in(pool: descriptor_pool.DescriptorPool, name: str) -> MessageClass | None:
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    except (KeyError, TypeError, ValueError):  # unknown, or files that do not link
        return None
