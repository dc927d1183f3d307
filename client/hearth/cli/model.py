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
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="local name (default: the file name without .gguf)")
@click.option("--no-upload", is_flag=True, help="only name it locally; do not add it to IPFS")
@json_opt
@pass_ctx
def model_add(c: Ctx, path: Path, name: str | None, no_upload: bool, as_json: bool) -> None:
    """Add a GGUF to IPFS and name it; prints its CID and sha256."""
    from hearth import models
    from hearth.ipfs.kubo import KuboClient

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file")
    ref = models.register(name or path.name.removesuffix(".gguf"), path)
    if not no_upload:
        with KuboClient(c.ipfs_api, timeout=600) as k:
            k.add_file(path, progress=progress_printer() if sys.stderr.isatty() else None)
    emit(asdict(ref), as_json, f"{ref.name}\n  cid    {ref.cid}\n  sha256 {ref.sha256}\n  size   {ref.size}")


@model_group.command("list")
@json_opt
def model_list(as_json: bool) -> None:
    """Named models."""
    from hearth import models

    rows = [asdict(m) for m in models.all_models()]
    emit(rows, as_json, "\n".join(f"{m['name']:20} {m['cid']}  {m['size']} bytes" for m in rows))
