"""The model cache: GGUF files fetched once by CID (verified block by block), checked against
their sha256, and kept on disk; bundled and named models are used in place."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from hearth.errors import VerificationError
from hearth.formats.cid import CID
from hearth.ipfs.fetch import BlockSource, Progress, fetch_to_file
from hearth.models import all_models

log = logging.getLogger("hearth.node")


def sha256_file(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _log_progress(cid: CID) -> Progress:
    """Log a model download every 10%."""
    last = [-1]

    def show(done: int, total: int) -> None:
        step = int(10 * done / total) if total else done // (100 << 20)
        if step != last[0]:
            last[0] = step
            log.info("model %s: %s", cid, f"{10 * step}%" if total else f"{done >> 20} MiB")

    return show


class ModelStore:
    """GGUF files by CID: local named models, else downloaded once from IPFS and verified."""

    def __init__(self, cache_dir: Path, ipfs: BlockSource) -> None:
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.ipfs = ipfs
        self._lock = threading.Lock()
        self._verified: dict[tuple[CID, str], Path] = {}

    def ensure(self, cid: CID, sha256: str, size: int = 0, progress: Progress | None = None) -> Path:
        """A local path whose bytes are the model with this CID and sha256."""
        key = (cid, sha256)
        known = self._verified.get(key)
        if known is not None:  # without the lock: a download of another model must not stall this
            return known
        with self._lock:
            if key in self._verified:
                return self._verified[key]
            path = self._local(cid) or self.cache_dir / f"{cid}.gguf"
            if not path.exists():
                log.info("downloading model %s (%d bytes)", cid, size)
                fetch_to_file(self.ipfs, cid, path, progress or _log_progress(cid), size)
                log.info("downloaded model %s", cid)
            actual = sha256_file(path)
            if actual != sha256:
                if path.parent == self.cache_dir:
                    path.unlink()
                raise VerificationError(f"model {cid} has sha256 {actual}, but the spec names {sha256}; not run")
            self._verified[key] = path
            return path

    def _local(self, cid: CID) -> Path | None:
        for m in all_models():  # the registry keeps CIDs as text
            if m.path and CID.parse(m.cid).digest == cid.digest and Path(m.path).exists():
                return Path(m.path)
        return None
