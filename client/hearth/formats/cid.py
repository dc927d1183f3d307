"""CIDs computed exactly as Kubo's `ipfs add` computes them. Pure: no I/O.

Kubo's defaults: CIDv0 (base58btc, dag-pb, sha2-256), fixed 262144-byte chunks, balanced
layout with at most 174 links per node, UnixFS leaves. `--cid-version=1` turns on raw leaves
(codec raw) and dag-pb internal nodes addressed by CIDv1 (base32).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from hearth.errors import InvalidCID

CHUNK_SIZE = 262_144
MAX_LINKS = 174
DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_INDEX = {c: i for i, c in enumerate(_B32)}


# --------------------------------------------------------------------------- encodings


def varint(n: int) -> bytes:
    """Unsigned LEB128, as multiformats and protobuf use."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a varint at `pos`; returns (value, next position)."""
    shift = value = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise InvalidCID("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def b58encode(data: bytes) -> str:
    """base58btc."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def b58decode(text: str) -> bytes:
    """base58btc; InvalidCID on a bad character."""
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise InvalidCID(f"invalid base58 character {c!r}")
        n = n * 58 + _B58_INDEX[c]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lowercase, no padding (multibase 'b')."""
    bits = nbits = 0
    out = []
    for byte in data:
        bits = (bits << 8) | byte
        nbits += 8
        while nbits >= 5:
            nbits -= 5
            out.append(_B32[(bits >> nbits) & 31])
    if nbits:
        out.append(_B32[(bits << (5 - nbits)) & 31])
    return "".join(out)


def b32decode(text: str) -> bytes:
    """Inverse of b32encode; InvalidCID on a bad character."""
    bits = nbits = 0
    out = bytearray()
    for c in text:
        if c not in _B32_INDEX:
            raise InvalidCID(f"invalid base32 character {c!r}")
        bits = (bits << 5) | _B32_INDEX[c]
        nbits += 5
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    return bytes(out)


# --------------------------------------------------------------------------- CID


@dataclass(frozen=True)
class CID:
    """A content identifier: version, codec and a sha2-256 multihash digest."""

    version: int
    codec: int
    digest: bytes

    @property
    def multihash(self) -> bytes:
        """sha2-256 multihash bytes."""
        return bytes([SHA2_256, 32]) + self.digest

    def to_bytes(self) -> bytes:
        """Binary CID (what the contracts store in events)."""
        if self.version == 0:
            return self.multihash
        return varint(1) + varint(self.codec) + self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return b58encode(self.multihash)
        return "b" + b32encode(self.to_bytes())

    def matches(self, block: bytes) -> bool:
        """Whether `block` hashes to this CID."""
        return hashlib.sha256(block).digest() == self.digest

    @staticmethod
    def for_block(block: bytes, codec: int, version: int) -> CID:
        """The CID of a block."""
        return CID(version, codec, hashlib.sha256(block).digest())

    @staticmethod
    def parse(value: str | bytes) -> CID:
        """Parse a CID string (v0 base58, v1 base32) or binary CID; InvalidCID otherwise."""
        try:
            return CID._parse(value)
        except InvalidCID as e:
            if str(e).startswith("not a CID"):
                raise
            shown = value if isinstance(value, str) else "0x" + value.hex()
            raise InvalidCID(f"not a CID: {shown!r} ({e})",
                             hint="a CID looks like Qm... (v0) or bafy.../bafk... (v1)") from None

    @staticmethod
    def _parse(value: str | bytes) -> CID:
        if isinstance(value, bytes):
            return _from_bytes(value)
        text = value.strip()
        if text.startswith("/ipfs/"):
            text = text[len("/ipfs/"):]
        if not text:
            raise InvalidCID("empty CID")
        if len(text) == 46 and text.startswith("Qm"):
            return _from_bytes(b58decode(text))
        if text[0] == "b":
            return _from_bytes(b32decode(text[1:].lower()))
        if text[0] == "z":
            return _from_bytes(b58decode(text[1:]))
        raise InvalidCID(
            f"not a CID: {value!r}",
            hint="a CID looks like Qm... (v0) or bafy.../bafk... (v1)",
        )


def _from_bytes(data: bytes) -> CID:
    if len(data) == 34 and data[0] == SHA2_256 and data[1] == 32:
        return CID(0, DAG_PB, data[2:])
    try:
        version, pos = read_varint(data, 0)
        codec, pos = read_varint(data, pos)
        mh_code, pos = read_varint(data, pos)
        mh_len, pos = read_varint(data, pos)
    except InvalidCID:
        raise InvalidCID(f"malformed CID bytes {data.hex()}") from None
    if version != 1:
        raise InvalidCID(f"unsupported CID version {version}")
    if mh_code != SHA2_256 or mh_len != 32 or len(data) - pos != 32:
        raise InvalidCID("only sha2-256 CIDs are supported")
    if codec not in (DAG_PB, RAW):
        raise InvalidCID(f"unsupported codec 0x{codec:x} (Hearth reads dag-pb and raw)")
    return CID(1, codec, data[pos:])


# --------------------------------------------------------------------------- dag-pb / UnixFS


def _field_bytes(tag: int, payload: bytes) -> bytes:
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def _field_varint(tag: int, value: int) -> bytes:
    return varint(tag << 3) + varint(value)


def unixfs_file(data: bytes, filesize: int, blocksizes: Iterable[int] = ()) -> bytes:
    """UnixFS Data message of a File node (Type=2)."""
    out = _field_varint(1, 2)
    if data:
        out += _field_bytes(2, data)
    out += _field_varint(3, filesize)
    for bs in blocksizes:
        out += _field_varint(4, bs)
    return out


def leaf_header(length: int) -> bytes:
    """Bytes of a dag-pb UnixFS leaf before its data: `header + data` is the whole block."""
    inner_prefix = _field_varint(1, 2) + (varint(2 << 3 | 2) + varint(length) if length else b"")
    inner_len = len(inner_prefix) + length + len(_field_varint(3, length))
    return varint(1 << 3 | 2) + varint(inner_len) + inner_prefix


def leaf_trailer(length: int) -> bytes:
    """Bytes of a dag-pb UnixFS leaf after its data (the filesize field)."""
    return _field_varint(3, length)


def pb_node(links: list[tuple[bytes, int]], data: bytes) -> bytes:
    """A dag-pb node: links (cid bytes, tsize) first, then data, as go-merkledag writes it."""
    out = bytearray()
    for cid_bytes, tsize in links:
        link = _field_bytes(1, cid_bytes) + _field_bytes(2, b"") + _field_varint(3, tsize)
        out += _field_bytes(2, link)
    out += _field_bytes(1, data)
    return bytes(out)


def _pb_fields(msg: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, value) of each field of a protobuf message: bytes for length-delimited
    fields, int for varints (the only wire types dag-pb and UnixFS use)."""
    pos = 0
    while pos < len(msg):
        key, pos = read_varint(msg, pos)
        if key & 7 == 2:
            length, pos = read_varint(msg, pos)
            if pos + length > len(msg):
                raise InvalidCID("truncated protobuf field")
            yield key >> 3, msg[pos:pos + length]
            pos += length
        elif key & 7 == 0:
            value, pos = read_varint(msg, pos)
            yield key >> 3, value
        else:
            raise InvalidCID(f"unexpected protobuf wire type {key & 7}")


def decode_pb_node(block: bytes) -> tuple[list[tuple[bytes, int]], bytes]:
    """Parse a dag-pb node into (links as (cid bytes, tsize), data)."""
    links: list[tuple[bytes, int]] = []
    data = b""
    for field, value in _pb_fields(block):
        if not isinstance(value, bytes):
            raise InvalidCID("malformed dag-pb node")
        if field == 2:
            link = dict(_pb_fields(value))
            cid_bytes, tsize = link.get(1, b""), link.get(3, 0)
            links.append((cid_bytes if isinstance(cid_bytes, bytes) else b"", tsize if isinstance(tsize, int) else 0))
        elif field == 1:
            data = value
    return links, data


def unixfs_data(data: bytes) -> tuple[int, bytes, int]:
    """Parse a UnixFS Data message: (type, data, filesize)."""
    fields = dict(_pb_fields(data))  # blocksizes (field 4) repeat; only the last is kept, unused here
    typ, content, filesize = fields.get(1, -1), fields.get(2, b""), fields.get(3, 0)
    if not (isinstance(typ, int) and isinstance(content, bytes) and isinstance(filesize, int)):
        raise InvalidCID("malformed UnixFS data")
    return typ, content, filesize


def unixfs_leaf_data(block: bytes) -> memoryview | None:
    """The data of a block that is exactly leaf_header + data + leaf_trailer (a UnixFS file leaf as
    Kubo writes it), as a view into the block (no copy); None for any other block (decode_pb_node
    parses those). The fast path of a verified fetch, which meets such leaves by the thousand."""
    try:
        pos = read_varint(block, 1)[1] + 2
        n = read_varint(block, pos + 1)[0] if block[pos:pos + 1] == b"\x12" else 0
    except InvalidCID:
        return None
    head, tail = leaf_header(n), leaf_trailer(n)
    if len(block) != len(head) + n + len(tail) or not block.startswith(head) or not block.endswith(tail):
        return None
    return memoryview(block)[len(head):len(head) + n]


def unixfs_fields(data: bytes) -> tuple[int, bytes, int | None, list[int]]:
    """A UnixFS Data message in full: (type, data, filesize or None if absent, blocksizes), what a
    fetcher needs to check that a node's declared sizes add up before it follows any link."""
    typ, content = -1, b""
    filesize: int | None = None
    sizes: list[int] = []
    for field, value in _pb_fields(data):
        if field == 1 and isinstance(value, int):
            typ = value
        elif field == 2 and isinstance(value, bytes):
            content = value
        elif field == 3 and isinstance(value, int):
            filesize = value
        elif field == 4 and isinstance(value, int):
            sizes.append(value)
        elif field == 4 and isinstance(value, bytes):  # packed: proto2 writers never pack it, but it is valid
            pos = 0
            while pos < len(value):
                size, pos = read_varint(value, pos)
                sizes.append(size)
        elif field in (1, 2, 3, 4):
            raise InvalidCID("malformed UnixFS data")
    return typ, content, filesize, sizes


# --------------------------------------------------------------------------- streaming file DAG

BlockSink = Callable[[CID, bytes], None]


class FileDAG:
    """Builds a file's UnixFS DAG as bytes stream in, in constant memory.

    Feed with `update`, get the root with `finish`. Each block is handed to `sink` (if any) as
    soon as it is complete, so an adder can store blocks without holding the file.
    """

    def __init__(
        self,
        cid_version: int = 0,
        sink: BlockSink | None = None,
        chunk_size: int = CHUNK_SIZE,
        raw_leaves: bool | None = None,
        max_links: int = MAX_LINKS,
    ) -> None:
        if cid_version not in (0, 1):
            raise InvalidCID(f"cid version must be 0 or 1, not {cid_version}")
        if raw_leaves and cid_version == 0:
            raise InvalidCID("raw leaves need CIDv1")
        self.version = cid_version
        # Kubo: --cid-version=1 implies raw leaves unless --raw-leaves=false is given
        self.raw_leaves = cid_version == 1 if raw_leaves is None else raw_leaves
        self.sink = sink
        self.chunk_size = chunk_size
        self.max_links = max_links
        self._buf = bytearray()
        # levels[i]: pending links of level i as (cid, tsize, filesize)
        self._levels: list[list[tuple[CID, int, int]]] = [[]]
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        """Add bytes to the file."""
        self.size += len(data)
        mv = memoryview(data)
        if self._buf:
            need = self.chunk_size - len(self._buf)
            self._buf += mv[:need]
            mv = mv[need:]
            if len(self._buf) == self.chunk_size:
                self._leaf(bytes(self._buf))
                self._buf.clear()
        while len(mv) >= self.chunk_size:
            self._leaf(mv[: self.chunk_size])
            mv = mv[self.chunk_size:]
        if len(mv):
            self._buf += mv

    def _leaf(self, chunk: bytes | memoryview) -> None:
        n = len(chunk)
        if self.raw_leaves:
            h = hashlib.sha256(chunk)
            cid = CID(1, RAW, h.digest())
            if self.sink:
                self.sink(cid, bytes(chunk))
            self._push(0, (cid, n, n))
            return
        head, tail = leaf_header(n), leaf_trailer(n)
        h = hashlib.sha256(head)
        h.update(chunk)
        h.update(tail)
        cid = CID(self.version, DAG_PB, h.digest())
        if self.sink:
            self.sink(cid, head + bytes(chunk) + tail)
        self._push(0, (cid, len(head) + n + len(tail), n))

    def _push(self, level: int, link: tuple[CID, int, int]) -> None:
        if level == len(self._levels):
            self._levels.append([])
        pending = self._levels[level]
        if len(pending) == self.max_links:
            # A full group closes only when more data arrives: at exactly MAX_LINKS leaves the
            # root itself holds them, as Kubo's balanced builder does.
            self._levels[level] = []
            self._push(level + 1, self._parent(pending))
            pending = self._levels[level]
        pending.append(link)

    def _parent(self, links: list[tuple[CID, int, int]]) -> tuple[CID, int, int]:
        filesize = sum(fs for _, _, fs in links)
        block = pb_node([(c.to_bytes(), ts) for c, ts, _ in links], unixfs_file(b"", filesize, [fs for *_, fs in links]))
        cid = CID.for_block(block, DAG_PB, self.version)
        if self.sink:
            self.sink(cid, block)
        return cid, len(block) + sum(ts for _, ts, _ in links), filesize

    def finish(self) -> CID:
        """Flush the last chunk and close every level; returns the root CID."""
        if self._buf or self.size == 0 and not self._levels[0]:
            if self.size == 0 and not self.raw_leaves:
                block = pb_node([], unixfs_file(b"", 0))
                cid = CID.for_block(block, DAG_PB, self.version)
                if self.sink:
                    self.sink(cid, block)
                return cid
            self._leaf(bytes(self._buf))
            self._buf.clear()
        level = 0
        while True:
            pending = self._levels[level]
            top = level == len(self._levels) - 1
            if top and len(pending) == 1:
                return pending[0][0]
            self._levels[level] = []
            self._push(level + 1, self._parent(pending))
            level += 1


def cid_of_bytes(data: bytes, cid_version: int = 0) -> CID:
    """The CID Kubo's `ipfs add` gives `data`."""
    dag = FileDAG(cid_version)
    dag.update(data)
    return dag.finish()
