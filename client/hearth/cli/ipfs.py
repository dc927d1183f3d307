"""`hearth ipfs`: add and fetch verified content, run the embedded daemon."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hearth.cli.common import Ctx, emit, json_opt, pass_ctx, progress_printer
from hearth.formats.cid import CID


@click.group("ipfs")
def ipfs_group() -> None:
    """Add and fetch content (verified) and run the embedded IPFS daemon."""


def _size(_: click.Context, __: click.Parameter, value: str | None) -> int | None:
    """A size option ('50G', '512MiB', bytes) as bytes."""
    if value is None:
        return None
    from hearth.ipfs.daemon import parse_size

    try:
        return parse_size(value)
    except (ValueError, IndexError):
        raise click.BadParameter(f"{value!r} is not a size (e.g. 512M, 50G, 1T)") from None


@ipfs_group.command("daemon")
@click.option("--data", type=click.Path(path_type=Path), help="blockstore directory (default: ~/.hearth/ipfs)")
@click.option("--port", default=5001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (localhost by default)")
@click.option("--quota", callback=_size, help="most the blockstore may hold on disk, e.g. 50G; writes past it are "
              "refused (default: no quota, but the disk's last 512 MiB are never used)")
@click.option("--max-add", callback=_size, help="largest file one add takes (default: 16G)")
@click.option("--allow-origin", multiple=True, help="a browser origin (scheme://host:port) the RPC API also answers; "
              "by default only its own")
@click.option("--serve-pins", is_flag=True, help="also serve the IPFS Pinning Service API at /pins to holders of a "
              "token in HEARTH_IPFS_PIN_TOKENS (comma-separated): a remote pin for your specs and results")
def ipfs_daemon(data: Path | None, port: int, host: str, quota: int | None, max_add: int | None,
                allow_origin: tuple[str, ...], serve_pins: bool) -> None:
    """Serve the Kubo RPC subset and trustless gateway paths from an on-disk blockstore."""
    from hearth.errors import ConfigError
    from hearth.ipfs.daemon import DEFAULT_MAX_ADD, serve
    from hearth.settings import data_dir, pin_service_tokens

    data = data or data_dir() / "ipfs"
    tokens = pin_service_tokens() if serve_pins else frozenset()
    if serve_pins and not tokens:
        raise ConfigError("--serve-pins needs access tokens", hint="set HEARTH_IPFS_PIN_TOKENS=token1,token2")
    click.echo(f"embedded IPFS daemon: API http://{host}:{port}/api/v0, gateway http://{host}:{port}/ipfs/, data {data}"
               + (f", pinning service http://{host}:{port}/pins" if tokens else ""), err=True)
    serve(data, host, port, quota, DEFAULT_MAX_ADD if max_add is None else max_add, allow_origin, tokens)


@ipfs_group.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--only-hash", "-n", is_flag=True, help="compute the CID locally; store nothing")
@click.option("--cid-version", type=click.IntRange(0, 1), default=0, show_default=True)
@click.option("--api", help="IPFS API URL (default: --ipfs-api)")
@json_opt
@pass_ctx
def ipfs_add(c: Ctx, path: Path, only_hash: bool, cid_version: int, api: str | None, as_json: bool) -> None:
    """Add a file; prints its CID and nothing else (like `ipfs add -Q`)."""
    from hearth.ipfs.kubo import KuboClient

    if only_hash:
        from hearth.formats.cid import FileDAG

        dag = FileDAG(cid_version)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                dag.update(chunk)
        cid = dag.finish()
    else:
        with KuboClient(api or c.ipfs_api, timeout=600) as k:
            cid = k.add_file(path, cid_version, progress=progress_printer() if sys.stderr.isatty() else None)
    emit({"cid": str(cid)}, as_json, str(cid))


_TIMEOUT_HELP = "seconds the whole fetch may take (default: 60 plus one per MiB of the file's declared size)"


@ipfs_group.command("cat")
@click.argument("cid")
@click.option("--api", help="IPFS API URL (default: --ipfs-api)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help=_TIMEOUT_HELP)
@pass_ctx
def ipfs_cat(c: Ctx, cid: str, api: str | None, timeout: float | None) -> None:
    """Print a file's bytes, every block verified against its CID."""
    from hearth.ipfs.fetch import iter_file
    from hearth.ipfs.kubo import KuboClient

    root = CID.parse(cid)
    with KuboClient(api or c.ipfs_api) as k:
        out = sys.stdout.buffer
        for piece in iter_file(k, root, timeout=timeout):
            out.write(piece)
        out.flush()


@ipfs_group.command("get")
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="file to write")
@click.option("--api", help="IPFS API URL (default: --ipfs-api)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help=_TIMEOUT_HELP)
@json_opt
@pass_ctx
def ipfs_get(c: Ctx, cid: str, output: Path, api: str | None, timeout: float | None, as_json: bool) -> None:
    """Fetch a file to disk, verified, with progress."""
    from hearth.ipfs.fetch import fetch_to_file
    from hearth.ipfs.kubo import KuboClient

    root = CID.parse(cid)

    with KuboClient(api or c.ipfs_api, timeout=600) as k:
        n = fetch_to_file(k, root, output, progress_printer(), timeout=timeout)
    click.echo(f"\nwrote {n} bytes to {output}", err=True)
    emit({"cid": str(root), "path": str(output), "bytes": n}, as_json)
