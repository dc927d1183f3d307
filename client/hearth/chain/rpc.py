"""What a public RPC endpoint does that a local anvil never does, handled below the SDK:

- `RetryingHTTPProvider` retries answers that mean "not now" (HTTP 429, 502, 503, 504, a 500
  without a JSON-RPC error in it, and JSON-RPC errors that say "rate limit" / "too many
  requests"), honouring `Retry-After` (seconds or an HTTP date), within a bounded total wait.
- `LogSpan` learns the widest `eth_getLogs` block range an endpoint accepts: it splits a range in
  half on a "range too large / too many results" answer (the phrasings of Infura, Alchemy,
  QuickNode, Tenderly, reth, erigon and geth forks, and the generic "block range" ones) and
  grows back after successes.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar, cast

import requests
from eth_typing import URI
from requests.structures import CaseInsensitiveDict
from web3 import HTTPProvider
from web3.types import RPCEndpoint

from hearth.errors import ChainError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Answers that mean "not now". A gateway's 502/503/504 are retried whatever their body; a 500
# only without a JSON-RPC error in it (some nodes answer a revert with 500). Retrying a call
# twice is harmless: reads are reads, and a re-sent raw transaction is "already known".
RETRY_STATUSES = {429, 500, 502, 503, 504}
GATEWAY_STATUSES = {502, 503, 504}

_RATE_LIMIT = ("rate limit", "too many requests", "request rate", "rate exceeded", "exceeded its rate",
               "requests per second", "throughput", "capacity exceeded", "compute units")

# Lower-cased fragments of the "your eth_getLogs asks too much" answers seen in the wild, e.g.
#   Infura    "query returned more than 10000 results. Try with this block range [0x.., 0x..]."
#   Infura    "range 1000000 exceeds limit of 10000"
#   Alchemy   "Log response size exceeded. ... this block range should work: [0x0, 0xd043b8]"
#   Alchemy   "You can make eth_getLogs requests with up to a 500 block range."
#   QuickNode "eth_getLogs is limited to a 10,000 range"
#   Tenderly  "range 9009594 is bigger than range limit 2000"
#   reth      "query exceeds max results 20000, retry with the range 25766988-25775072"
#   erigon    "block range too large, max range: 1000" / "limit exceeded"
#   geth forks "block range is bigger than maxBlockRange", "exceed maximum block range: 5000"
_RANGE_TOO_LARGE = (
    "query returned more than", "exceeds limit", "range limit", "block range", "blocks range",
    "log response size", "response size", "limited to a", "range too large", "range is too large",
    "range too wide", "range is too wide", "too many results", "too many logs", "too many blocks",
    "max results", "maximum results", "max block range", "maximum block range", "max range", "limit exceeded",
    "query timeout", "exceeds the range", "range exceeds", "retry with the range",
)

_HEX_RANGE = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]")
_DEC_RANGE = re.compile(r"range (\d+)\s*-\s*(\d+)")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date; None when
    absent or unreadable (the caller then backs off on its own)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_rate_limited(text: str) -> bool:
    """Whether an error text is a rate limit (retry later) rather than a real answer."""
    low = text.lower()
    return any(s in low for s in _RATE_LIMIT)


def is_range_too_large(text: str) -> bool:
    """Whether a get_logs error text asks for a smaller block range (or fewer results)."""
    low = text.lower()
    return not is_rate_limited(low) and any(s in low for s in _RANGE_TOO_LARGE)


def suggested_span(text: str, start: int) -> int | None:
    """The span an endpoint suggests in its error ("this block range should work: [a, b]",
    "retry with the range a-b"), when it starts at `start` and is a real range."""
    low = text.lower()
    m = _HEX_RANGE.search(low)
    pair = (int(m.group(1), 16), int(m.group(2), 16)) if m else None
    if pair is None and (d := _DEC_RANGE.search(low)):
        pair = (int(d.group(1)), int(d.group(2)))
    if pair is None or pair[0] != start or pair[1] < pair[0]:
        return None
    return pair[1] - pair[0] + 1


def _rpc_error(body: bytes) -> dict[str, Any] | None:
    """The JSON-RPC error object of a single (non-batch) answer, if it is one."""
    if b'"error"' not in body[:4096]:
        return None  # the common case: a result, never parsed twice
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    return err if isinstance(err, dict) else None


class RetryingHTTPProvider(HTTPProvider):
    """An HTTPProvider that waits out rate limits and gateway hiccups instead of failing.

    Each RPC call is retried while the endpoint answers "not now" (see the module docstring),
    waiting what `Retry-After` asks, else an exponential backoff with jitter (`base_delay`
    doubling up to `max_delay`), until the waits of that one call would exceed `max_wait`
    seconds or `max_retries` retries: then a ChainError says the endpoint keeps refusing.
    Connection errors and timeouts get `connect_retries` quick retries, as web3 itself does.
    Any other answer with a JSON-RPC error body (whatever its HTTP status: QuickNode sends its
    range errors with a 413) is returned as the answer, for web3 to raise.
    `stats` counts what was retried, for logs and tests.
    """

    def __init__(
        self, endpoint_uri: str, request_kwargs: dict[str, Any] | None = None, *, max_wait: float = 60.0,
        max_retries: int = 30, base_delay: float = 0.25, max_delay: float = 10.0, connect_retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # web3's own retry loop is replaced by the one below (it would not see 429s at all).
        # Its validation middleware asks eth_chainId before every eth_call and eth_estimateGas:
        # the chain id is remembered instead (per thread, web3's request cache), which halves
        # the round trips of a read and the CPU that the node's threads take from inference.
        super().__init__(endpoint_uri, request_kwargs=request_kwargs, exception_retry_configuration=None,
                         cache_allowed_requests=True, cacheable_requests={RPCEndpoint("eth_chainId")})
        self.max_wait = max_wait
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.connect_retries = connect_retries
        self.sleep = sleep
        self.stats = {"rate_limited": 0, "server_errors": 0, "connection_errors": 0, "waited_s": 0.0}
        self._rng = random.Random()

    def _post_once(self, request_data: bytes) -> tuple[int, Mapping[str, str], bytes]:
        for attempt in range(self.connect_retries + 1):
            try:
                with self._request_session_manager.get_response_from_post_request(
                    cast(URI, self.endpoint_uri), data=request_data, **self.get_request_kwargs()
                ) as resp:
                    return resp.status_code, CaseInsensitiveDict(resp.headers), resp.content
            except (requests.ConnectionError, requests.Timeout):
                self.stats["connection_errors"] += 1
                if attempt == self.connect_retries:
                    raise
                self.sleep(0.125 * 2**attempt)
        raise AssertionError("unreachable")

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        waited = 0.0
        for attempt in range(self.max_retries + 1):
            status, headers, body = self._post_once(request_data)
            err = _rpc_error(body)
            limited = status == 429 or (err is not None and is_rate_limited(str(err)))
            if not limited and status not in GATEWAY_STATUSES:
                if err is not None:
                    return body  # a real JSON-RPC answer (a revert, a range error): web3 raises it
                if status not in RETRY_STATUSES and status >= 400:
                    raise requests.HTTPError(f"{status} from {self.endpoint_uri} for {method}")
                if status not in RETRY_STATUSES:
                    return body
            self.stats["rate_limited" if limited else "server_errors"] += 1
            wait = parse_retry_after(headers.get("Retry-After"))
            if wait is None and err is not None:
                wait = _backoff_hint(err)
            if wait is None:
                wait = min(self.max_delay, self.base_delay * 2**attempt) * self._rng.uniform(0.5, 1.0)
            if waited + wait > self.max_wait or attempt == self.max_retries:
                raise ChainError(
                    f"the RPC endpoint keeps refusing {method} (HTTP {status}"
                    f"{', rate limited' if limited else ''}) after {attempt + 1} tries and {waited:.0f}s of waiting",
                    hint="use an endpoint with a higher rate limit, or try again later",
                )
            log.debug("%s: HTTP %d, retrying in %.2fs", method, status, wait)
            waited += wait
            self.stats["waited_s"] += wait
            self.sleep(wait)
        raise AssertionError("unreachable")


def _backoff_hint(err: dict[str, Any]) -> float | None:
    """Infura-style `data.rate.backoff_seconds` in a rate-limit error body."""
    data = err.get("data")
    rate = data.get("rate") if isinstance(data, dict) else None
    value = rate.get("backoff_seconds") if isinstance(rate, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


class LogSpan:
    """The widest get_logs block span an endpoint accepts, learned from its answers.

    Until an endpoint refuses, a range is asked for whole (one call, as a local node allows).
    After a refusal the range is walked in chunks: a refused span becomes the known-bad bound and
    the next chunk is halfway between the widest accepted span and it (or half of it while
    nothing was accepted yet, or the span the endpoint itself suggested), so it converges on the
    endpoint's limit in a few calls; after every success the span grows again towards that bound.
    After `relearn_after` successes in a row the bound is forgotten and ranges are asked for
    whole again, then in doubling spans (limits differ between the nodes behind one URL, and plans change).
    Thread-safe: one per Market, shared by its callers.
    """

    def __init__(self, relearn_after: int = 64) -> None:
        self.relearn_after = relearn_after
        self.good: int | None = None  # widest span accepted since the last refusal
        self.bad: int | None = None  # narrowest span refused
        self._hint: int | None = None
        self._ok_since_bad = 0
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            if self._hint is not None:
                hint, self._hint = self._hint, None
                return hint
            if self.bad is None:
                return (self.good or 1) * 2
            if self.good is None:
                return max(1, self.bad // 2)
            return max(self.good, (self.good + self.bad) // 2)

    def _refused(self, span: int, text: str, start: int) -> None:
        with self._lock:
            self.bad = span if self.bad is None else min(self.bad, span)
            if self.good is not None and self.good >= self.bad:
                self.good = max(1, self.bad // 2)  # a denser region, or a stricter node
            hint = suggested_span(text, start)
            self._hint = hint if hint is not None and hint < span else None
            self._ok_since_bad = 0

    def _accepted(self, span: int) -> None:
        with self._lock:
            self.good = span if self.good is None else max(self.good, span)
            self._ok_since_bad += 1
            if self.bad is not None and self._ok_since_bad >= self.relearn_after:
                self.bad = None  # probe upward again: ranges are asked for whole, then doubled

    def fetch(self, first: int, last: int | str, query: Callable[[int, int | str], list[T]],
              head: Callable[[], int]) -> list[T]:
        """Every item `query(a, b)` returns over `first..last` (`last` may be "latest", resolved
        with `head()` only when the range must be split), in block order."""
        if isinstance(last, int) and last < first:
            return []  # an empty range: nothing to ask (geth would answer "invalid block range")
        if self.bad is None:
            try:
                return query(first, last)
            except Exception as e:
                if not is_range_too_large(str(e)):
                    raise
                end = head() if isinstance(last, str) else last
                if end < first:
                    raise
                self._refused(end - first + 1, str(e), first)
                log.info("get_logs over %d blocks refused (%s): splitting", end - first + 1, e)
        end_block = head() if isinstance(last, str) else last
        out: list[T] = []
        start = first
        while start <= end_block:
            span = self._next()
            end = min(end_block, start + span - 1)
            try:
                part = query(start, end)
            except Exception as e:
                if not is_range_too_large(str(e)) or end == start:
                    raise  # a single block that is still too much cannot be split further
                self._refused(end - start + 1, str(e), start)
                continue
            self._accepted(end - start + 1)
            out.extend(part)
            start = end + 1
        return out
