"""`hearth model add --from-ollama`: Ollama's manifests and blob store read in place, the blob's
sha256 checked against its digest name, and a node on the devnet serving the model from the
blob (no copy) and answering a job with it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hearth import models
from hearth.dev.localnet import Localnet
from hearth.errors import UserError, VerificationError

from tests.waits import wait_settled

# The bundled GGUF with one metadata string changed (same length): it loads and answers alike,
# but its CID differs from the bundled model's, so a node can only have it from the Ollama blob.
BUNDLED_GGUF_NAME = b"Smollm2 135M 8k Lc100K Mix1 Ep2"
OLLAMA_GGUF_NAME = b"Smollm2 135M in an Ollama store"


def _put_blob(store: Path, data_path: Path) -> str:
    """Store a file as Ollama does (blobs/sha256-<hex>); returns the hex digest."""
    h = hashlib.sha256()
    with open(data_path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_path, store / "blobs" / f"sha256-{h.hexdigest()}")
    return h.hexdigest()


def _put_manifest(store: Path, parts: tuple[str, ...], tag: str, model_hex: str) -> Path:
    """A manifest as `ollama pull` writes it: a config, the model layer and a template layer."""
    template = b"{{ .Prompt }}"
    template_hex = hashlib.sha256(template).hexdigest()
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    (store / "blobs" / f"sha256-{template_hex}").write_bytes(template)
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{model_hex}",
             "size": (store / "blobs" / f"sha256-{model_hex}").stat().st_size},
            {"mediaType": "application/vnd.ollama.image.template", "digest": f"sha256:{template_hex}",
             "size": len(template)},
        ],
    }
    path = store.joinpath("manifests", *parts, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry of this test's own (registering must not leak into other tests' models)."""
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _tiny_gguf(tmp_path: Path, body: bytes = b"tiny") -> Path:
    p = tmp_path / f"{body.decode()}.gguf"
    p.write_bytes(b"GGUF" + body * 64)
    return p


def test_library_and_namespaced_models_are_found_in_the_store(tmp_path: Path, home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "ollama"
    a = _put_blob(store, _tiny_gguf(tmp_path, b"a"))
    b = _put_blob(store, _tiny_gguf(tmp_path, b"b"))
    _put_manifest(store, ("registry.ollama.ai", "library", "tiny"), "latest", a)
    _put_manifest(store, ("registry.ollama.ai", "someone", "other"), "q4", b)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))  # Ollama's own variable is respected
    assert models.ollama_refs() == ["someone/other:q4", "tiny:latest"]
    found = models.find_ollama("tiny")
    assert (found.ref, found.sha256, found.blob) == ("tiny:latest", a, store / "blobs" / f"sha256-{a}")
    ref = models.register_ollama("someone/other:q4")
    assert (ref.name, ref.sha256, ref.path) == ("other:q4", b, str(store / "blobs" / f"sha256-{b}"))
    assert models.resolve("other:q4").path == ref.path  # the registry points at the blob: no copy


def test_a_blob_that_does_not_hash_to_its_digest_is_refused(tmp_path: Path, home: Path) -> None:
    store = tmp_path / "ollama"
    digest = _put_blob(store, _tiny_gguf(tmp_path))
    _put_manifest(store, ("registry.ollama.ai", "library", "tiny"), "latest", digest)
    blob = store / "blobs" / f"sha256-{digest}"
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")  # bit rot
    with pytest.raises(VerificationError, match="sha256"):
        models.register_ollama("tiny", store=store)
    assert [m.name for m in models.all_models() if m.name.startswith("tiny")] == []


def test_unknown_names_and_paths_outside_the_store_are_user_errors(tmp_path: Path, home: Path) -> None:
    store = tmp_path / "ollama"
    _put_manifest(store, ("registry.ollama.ai", "library", "tiny"), "latest",
                  _put_blob(store, _tiny_gguf(tmp_path)))
    with pytest.raises(UserError, match=r"there: tiny:latest"):
        models.find_ollama("llama3.2:1b", store)
    for bad in ("../../etc/passwd", "a/b/c/d", "tiny:../x", ".hidden", ""):
        with pytest.raises(UserError, match="not an Ollama model name"):
            models.find_ollama(bad, store)


def test_the_pre_0_1_34_blob_name_is_read_too(tmp_path: Path, home: Path) -> None:
    store = tmp_path / "ollama"
    digest = _put_blob(store, _tiny_gguf(tmp_path))
    _put_manifest(store, ("registry.ollama.ai", "library", "tiny"), "latest", digest)
    (store / "blobs" / f"sha256-{digest}").rename(store / "blobs" / f"sha256:{digest}")
    assert models.find_ollama("tiny", store).blob.name == f"sha256:{digest}"


def test_a_node_serves_a_model_from_an_ollama_store_in_place(tmp_path: Path, env: Localnet) -> None:
    store = tmp_path / "ollama"
    gguf = tmp_path / "smollm2.gguf"
    with open(models.bundled().path or "", "rb") as src, open(gguf, "wb") as dst:
        head = src.read(4096)
        assert head.count(BUNDLED_GGUF_NAME) == 1
        dst.write(head.replace(BUNDLED_GGUF_NAME, OLLAMA_GGUF_NAME))
        shutil.copyfileobj(src, dst)
    digest = _put_blob(store, gguf)
    gguf.unlink()
    _put_manifest(store, ("registry.ollama.ai", "library", "smollm2"), "135m", digest)

    # --no-upload: the model is nowhere in IPFS, so the node can only run it from the blob
    added = env.hearth_json("model", "add", "--from-ollama", "smollm2:135m", "--no-upload",
                            extra_env={"OLLAMA_MODELS": str(store)})
    assert added["name"] == "smollm2:135m" and added["sha256"] == digest
    assert added["path"] == str(store / "blobs" / f"sha256-{digest}")
    assert added["cid"] != models.bundled().cid
    listed = env.hearth_json("model", "list")
    assert "smollm2:135m" in [m["name"] for m in listed]

    env.start_node(extra=("--model", "smollm2:135m"))
    out = env.hearth_json("job", "submit", "--model", "smollm2:135m", "--max-tokens", "16",
                          "--prompt", "What is the capital of France? Answer in one word.")
    assert out["verified"] is True and out["output"].strip()
    wait_settled(env.market, out["job_id"])
    assert list((env.home / "node").rglob("*.gguf")) == []  # served in place, never copied
