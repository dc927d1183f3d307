"""CARv1 reading and writing (pure; blocks are verified by their CIDs where they are used)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from hearth.errors import InvalidCID
from hearth.formats.cid import CID, read_varint, varint


def _cid_length(section: bytes | memoryview) -> int:
    """Length of the CID at the start of a CAR section (v0: a bare 34-byte multihash)."""
    if section[:2] == b"\x12\x20":
        return 34
    data = bytes(section[:32])  # version, codec, hash code and length all fit in the first bytes
    _, p = read_varint(data, 0)
    _, p = read_varint(data, p)
    _, p = read_varint(data, p)
    mh_len, p = read_varint(data, p)
    return p + mh_len


def read_car(data: bytes) -> dict[bytes, bytes]:
    """Parse a CARv1 into {sha256 digest: block}; blocks are verified later by their CID."""
    hlen, pos = read_varint(data, 0)
    pos += hlen
    blocks: dict[bytes, bytes] = {}
    while pos < len(data):
        ln, pos = read_varint(data, pos)
        section = data[pos:pos + ln]
        pos += ln
        cid_len = _cid_length(section)
        cid = CID.parse(section[:cid_len])
        blocks[cid.digest] = section[cid_len:]
    return blocks


class CarReader:
    """A CARv1 parsed as it arrives: `feed` bytes in any pieces, get whole (CID, block) sections
    back. Memory stays at one section plus one piece: a section over `max_section` bytes (a hostile
    length prefix) is refused before it is buffered. Pieces are kept as views and each block is
    copied once, out of them (this runs at the speed of the network). The header (roots) is
    skipped: the reader's user knows which root it asked for and checks every block it expects."""

    def __init__(self, max_section: int) -> None:
        self.max_section = max_section
        self._parts: deque[memoryview] = deque()
        self._have = 0
        self._in_header = True

    def _peek(self, n: int) -> bytes:
        out = bytearray()
        for part in self._parts:
            out += part[:n - len(out)]
            if len(out) >= n:
                break
        return bytes(out)

    def _take(self, n: int) -> bytes:
        self._have -= n
        chunks = []
        while n:
            part = self._parts[0]
            if len(part) <= n:
                chunks.append(self._parts.popleft())
                n -= len(part)
            else:
                chunks.append(part[:n])
                self._parts[0] = part[n:]
                n = 0
        return chunks[0].tobytes() if len(chunks) == 1 else b"".join(chunks)

    def feed(self, piece: bytes) -> list[tuple[CID, bytes]]:
        """Sections completed by `piece`; InvalidCID if the stream is malformed."""
        if piece:
            self._parts.append(memoryview(piece))
            self._have += len(piece)
        out: list[tuple[CID, bytes]] = []
        while (head := _peek_varint(self._peek(10))) is not None:
            length, head_len = head
            if length > self.max_section:
                raise InvalidCID(f"CAR section of {length} bytes, over the {self.max_section}-byte limit")
            if self._have < head_len + length:
                break
            self._take(head_len)
            if self._in_header:
                self._take(length)
                self._in_header = False
                continue
            cid_len = _cid_length(self._peek(min(length, 40)))
            if not 0 < cid_len <= length:
                raise InvalidCID("malformed CAR section")
            cid = CID.parse(self._take(cid_len))
            out.append((cid, self._take(length - cid_len)))
        return out

    def finish(self) -> None:
        """InvalidCID if the stream stopped part-way through a section."""
        if self._have or self._in_header:
            raise InvalidCID("CAR stream ended part-way through a section")


def _peek_varint(data: bytes) -> tuple[int, int] | None:
    """(value, its length) of the varint `data` starts with, or None if it is not all there yet."""
    end = next((i for i, b in enumerate(data[:10]) if not b & 0x80), None)
    if end is None:  # no last byte yet: more may come, unless 10 bytes (over 64 bits) already did
        if len(data) >= 10:
            raise InvalidCID("malformed varint in CAR stream")
        return None
    return read_varint(data, 0)


def write_car(root: CID, blocks: Iterator[tuple[CID, bytes]]) -> Iterator[bytes]:
    """Serialize a CARv1 (header with one root, then each block)."""
    root_b = root.to_bytes()
    # dag-cbor header {"roots": [CID], "version": 1}; a CID in dag-cbor is tag 42 over 0x00 + bytes
    cid_payload = b"\x00" + root_b
    header = (
        b"\xa2" + b"\x65roots" + b"\x81" + b"\xd8\x2a" + _cbor_bytes_head(len(cid_payload)) + cid_payload
        + b"\x67version" + b"\x01"
    )
    yield varint(len(header)) + header
    for cid, block in blocks:
        cb = cid.to_bytes()
        yield varint(len(cb) + len(block)) + cb
        yield block  # not concatenated: a block is copied once, where the pieces are joined or sent


def _cbor_bytes_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x40 | n])
    if n < 256:
        return bytes([0x58, n])
    return bytes([0x59]) + n.to_bytes(2, "big")
