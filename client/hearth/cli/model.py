"""`hearth model`: models named by content (CID + sha256)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from hearth.cli.common import Ctx, emit, json_opt, pass_ctx, progress_printer
from hearth.errors import UserError


@click.group("model")
def model_group() -> None:
    """Name models by content (CID + sha256)."""


@model_group.command("add")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from-ollama", "ollama_ref", metavar="NAME[:TAG]",
              help="take the GGUF of a model in Ollama's store (OLLAMA_MODELS or ~/.ollama/models), in place")
@click.option("--name", help="local name (default: the file name without .gguf; Ollama's NAME:TAG)")
@click.option("--no-upload", is_flag=True,
              help="only name it locally, not in IPFS (no second copy on disk; other providers cannot fetch it)")
@json_opt
@pass_ctx
def model_add(c: Ctx, path: Path | None, ollama_ref: str | None, name: str | None, no_upload: bool,
              as_json: bool) -> None:
    """Name a GGUF file (LM Studio, GPT4All, a download) or an Ollama model, and add it to IPFS.

    The name points at the file where it is: a node on this machine serves it without a copy.
    Prints the model's CID and sha256."""
    from hearth import models
    from hearth.ipfs.kubo import KuboClient

    if (path is None) == (ollama_ref is None):
        raise UserError("give a GGUF file or --from-ollama NAME[:TAG], not both or neither",
                        hint="hearth model add ~/models/x.gguf   or   hearth model add --from-ollama llama3.2:1b")
    if ollama_ref is not None:
        ref = models.register_ollama(ollama_ref, name)
    else:
        assert path is not None
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise UserError(f"{path} is not a GGUF file")
        ref = models.register(name or path.name.removesuffix(".gguf"), path)
    if not no_upload:
        assert ref.path is not None
        with KuboClient(c.ipfs_api, timeout=600) as k:
            k.add_file(Path(ref.path), progress=progress_printer() if sys.stderr.isatty() else None)
    emit(asdict(ref), as_json, f"{ref.name}\n  cid    {ref.cid}\n  sha256 {ref.sha256}\n  size   {ref.size}\n"
                               f"  path   {ref.path}")


@model_group.command("list")
@json_opt
def model_list(as_json: bool) -> None:
    """Named models."""
    from hearth import models

    rows = [asdict(m) for m in models.all_models()]
    emit(rows, as_json, "\n".join(f"{m['name']:20} {m['cid']}  {m['size']} bytes" for m in rows))
