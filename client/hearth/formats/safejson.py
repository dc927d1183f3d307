"""A JSON loader for untrusted bytes: bounded nesting, bounded numbers, UTF-8 only. Pure: no I/O.

Why not plain json.loads: importing web3 raises the interpreter's recursion limit to 100,000, so
the C decoder no longer stops at depth ~1,000 and a run of 65,536 `[` overflows the C stack
(SIGSEGV: no exception to catch). The nesting depth is therefore measured by a linear pre-scan
*before* the decoder sees the text. Hooks then refuse what Python would otherwise turn into
inf/nan or into an int() that raises, and repeated keys; strings holding lone surrogates are
refused too. The only error that leaves this module is JSONRejected.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, NoReturn

MAX_DEPTH = 16  # specs nest 3 levels, results 3: ample headroom, and far below any stack limit
MAX_INT_DIGITS = 20  # 2**64 has 20 digits; more is never a job id, a seed or a token count
MAX_FLOAT_CHARS = 40  # repr() of any finite float is at most 24 characters

# Brackets become signed bytes, openers +1 and closers -1, and everything else is deleted, so
# the running sum of what is left is the nesting depth at each bracket.
_SIGN = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# Escapes \ud800..\udfff: the only way a surrogate gets into a decoded string (the bytes are
# strict UTF-8). A cheap pre-filter; an escaped backslash before `u` merely costs a re-check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONRejected(ValueError):
    """Bytes that are not JSON, or JSON outside the bounds above. The message quotes no input."""


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in `data`, counting brackets outside JSON strings.

    Exact for every prefix that a JSON decoder would accept, so the decoder can never get deeper
    than this number before it either finishes or fails. Linear time, C-speed steps, no recursion
    (about 35 ms for the worst MiB)."""
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    # Drop escapes so that every quote left delimits a string: `\\` pairs first (a run of
    # backslashes pairs up from its start, as in JSON), then escaped quotes. `"` and `\` never
    # occur inside a multi-byte UTF-8 sequence, so working on the raw bytes is exact.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])  # even pieces lie between strings
    signs = outside.translate(_SIGN, _NOT_BRACKET)
    if signs.count(1) == 0:
        return 0
    return max(accumulate(memoryview(signs).cast("b")))


def _no_constant(name: str) -> NoReturn:
    raise JSONRejected(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JSONRejected(f"an integer has {len(text)} digits, more than {MAX_INT_DIGITS}")
    return int(text)


def _finite_float(text: str) -> float:
    if len(text) > MAX_FLOAT_CHARS:
        raise JSONRejected(f"a number is {len(text)} characters long, more than {MAX_FLOAT_CHARS}")
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise JSONRejected("a number is too large to be finite")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys would let two readers of one document disagree on which value counts.
    d = dict(pairs)
    if len(d) != len(pairs):
        raise JSONRejected("an object repeats a key")
    return d


def loads(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Decode untrusted JSON bytes; JSONRejected for anything malformed or out of bounds."""
    try:
        text = data.decode("utf-8")  # strictly UTF-8: json.loads would also guess UTF-16 and UTF-32
    except UnicodeDecodeError as e:
        raise JSONRejected(f"not UTF-8 (byte {e.start})") from None
    depth = nesting_depth(data)
    if depth > max_depth:
        raise JSONRejected(f"nested {depth} levels deep, more than {max_depth}")
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_float=_finite_float,
                           parse_constant=_no_constant, object_pairs_hook=_unique_keys)
        if _SURROGATE_ESCAPE.search(data):
            # A lone surrogate decodes fine but cannot be encoded again, so it would crash whoever
            # hashes or re-serializes the value later: canonical(), output_hash(), the tokenizer.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except JSONRejected:
        raise
    except UnicodeEncodeError:
        raise JSONRejected("a string holds a lone UTF-16 surrogate, which is not Unicode text") from None
    except json.JSONDecodeError as e:  # its message names a position, never the input itself
        raise JSONRejected(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # belt and braces: nothing else may escape
        raise JSONRejected(f"not JSON: {type(e).__name__}") from None
