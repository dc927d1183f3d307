"""CARv1 reading and writing (pure; blocks are verified by their CIDs where they are used)."""

from __future__ import annotations

from collections.abc import Iterator

from hearth.formats.cid import CID, read_varint, varint


def read_car(data: bytes) -> dict[bytes, bytes]:
    """Parse a CARv1 into {sha256 digest: block}; blocks are verified later by their CID."""
    hlen, pos = read_varint(data, 0)
    pos += hlen
    blocks: dict[bytes, bytes] = {}
    while pos < len(data):
        ln, pos = read_varint(data, pos)
        section = data[pos:pos + ln]
        pos += ln
        if section[:2] == b"\x12\x20":
            cid_len = 34
        else:
            _, p = read_varint(section, 0)
            _, p = read_varint(section, p)
            _, p = read_varint(section, p)
            mh_len, p = read_varint(section, p)
            cid_len = p + mh_len
        cid = CID.parse(section[:cid_len])
        blocks[cid.digest] = section[cid_len:]
    return blocks


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
        yield varint(len(cb) + len(block)) + cb + block


def _cbor_bytes_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x40 | n])
    if n < 256:
        return bytes([0x58, n])
    return bytes([0x59]) + n.to_bytes(2, "big")
