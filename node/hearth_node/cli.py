"""The node's commands, plugged into `hearth` through the `hearth.cli` entry point:
`hearth node init|run`, `hearth bench node` and `hearth job verify` (which re-runs a job with
llama.cpp, so it belongs to the package that owns the runner)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from hearth.cli.common import JOB_ID, Ctx, emit, json_opt, pass_ctx
from hearth.errors import UserError
from hearth.formats.units import parse_amount
from hearth.settings import DEFAULT_IPFS_API


def log_past_model_loads(logger: logging.Logger) -> None:
    """Point `logger`'s stderr handlers at a copy of fd 2 taken now. llama-cpp-python points fds
    1 and 2 at /dev/null while it loads a model (verbose=False), and whatever another thread
    logged meanwhile was lost (a "reorg detected", an RPC error); the copy is not redirected."""
    own = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    for h in logger.handlers:
        if isinstance(h, logging.StreamHandler) and _fileno(h.stream) == 2:
            h.setStream(own)


def _fileno(stream: object) -> int | None:
    try:
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


@click.group("node")
def node_group() -> None:
    """Run a provider node."""


@node_group.command("init")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("hearth-node.toml"),
              show_default=True)
@click.option("--force", is_flag=True, help="overwrite an existing file")
def node_init(output: Path, force: bool) -> None:
    """Write a commented config file with every setting and its default."""
    from hearth_node.config import commented_config

    if output.exists() and not force:
        raise UserError(f"{output} exists", hint="pass --force to overwrite")
    try:
        output.write_text(commented_config())
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}", hint="pass -o FILE in a directory that exists") from None
    click.echo(f"wrote {output}")


@node_group.command("run")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML config (see hearth node init)")
@click.option("--model", "models", multiple=True, help="model name or CID to serve (repeatable)")
@click.option("--min-price", help="least payment accepted, HRT")
@click.option("--api-port", type=int, help="HTTP API port")
@click.option("--dev-account", type=int, help="devnet only: dev account index of the provider (default 1)")
@click.option("--n-gpu-layers", type=int, help="layers to offload to the GPU (CUDA build)")
@click.option("--data-dir", type=click.Path(path_type=Path), help="journal and model cache directory")
@pass_ctx
def node_run(c: Ctx, config_file: Path | None, models: tuple[str, ...], min_price: str | None, api_port: int | None,
             dev_account: int | None, n_gpu_layers: int | None, data_dir: Path | None) -> None:
    """Watch the market, claim jobs this node can serve, run them, deliver results."""
    import tomllib

    from pydantic import ValidationError

    from hearth_node.config import load_settings
    from hearth_node.service import NodeService

    logging.getLogger("hearth.node").setLevel(logging.INFO)
    log_past_model_loads(logging.getLogger())
    try:
        s = load_settings(
            config_file, network=c.network, rpc_url=c.rpc_url,
            ipfs_api=c.ipfs_api if c.ipfs_api != DEFAULT_IPFS_API else None,
            keystore=c.keystore, models=list(models) or None,
            min_price=parse_amount(min_price) if min_price else None, api_port=api_port, dev_account=dev_account,
            n_gpu_layers=n_gpu_layers, data_dir=data_dir,
        )
    except ValidationError as e:
        raise UserError(f"bad node settings: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:  # a file that is not UTF-8 is not TOML either
        raise UserError(f"{config_file} is not valid TOML: {e}", hint="write a fresh one: hearth node init") from None
    NodeService(s).run_forever()


@click.command("node")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=50, show_default=True,
              help="queued short jobs for the throughput run (plain llama-cpp-python runs the same)")
@click.option("--overhead-jobs", type=click.IntRange(min=1), default=10, show_default=True,
              help="sequential jobs for the overhead median")
@click.option("--pairs", type=click.IntRange(min=1), default=9, show_default=True,
              help="node/plain pairs of 200-token runs for the tokens/s ratio")
@json_opt
def bench_node(n_jobs: int, overhead_jobs: int, pairs: int, as_json: bool) -> None:
    """Node overhead, tokens/s and jobs/minute against plain llama-cpp-python."""
    from hearth_node.bench import node_bench

    r = node_bench(n_jobs, overhead_jobs, pairs)
    emit(r, as_json, "\n".join([
        f"overhead per job      median {r['overhead_ms_median']:.1f} ms ({overhead_jobs} jobs)",
        f"tokens/s node/plain   median of pair ratios {r['tokens_per_s_ratio_median']:.3f}  "
        f"(pairs: {', '.join(f'{x:.3f}' for x in r['tokens_per_s_pair_ratios'])})",
        f"                      best {r['tokens_per_s_node']:.1f} vs {r['tokens_per_s_plain']:.1f} "
        f"({r['tokens_per_s_ratio']:.3f})",
        f"jobs/minute           node {r['jobs_per_minute']:.1f}, plain {r['jobs_per_minute_plain']:.1f} "
        f"({r['jobs_per_minute_ratio']:.3f}; {n_jobs} jobs; llama.cpp threads: {r['threads']})",
        f"                      node {r['throughput_seconds']['node']:.1f} s (its jobs posted before it started, "
        f"in {r['throughput_seconds']['posting_before']:.1f} s), plain {r['throughput_seconds']['plain']:.1f} s",
    ]))


@click.command("verify")
@click.argument("job_id", type=JOB_ID)
# the default repeats verify.DEFAULT_MAX_MODEL_BYTES: importing verify here would load the runner
# on every `hearth` start
@click.option("--max-model-bytes", type=click.IntRange(min=1), default=8 << 30, show_default=True,
              help="largest model download accepted (the job's spec is untrusted)")
@json_opt
@pass_ctx
def job_verify(c: Ctx, job_id: int, max_model_bytes: int, as_json: bool) -> None:
    """Re-run a job locally with the model posted on chain and the spec's params; exit 0 only if
    the output hash matches."""
    from hearth_node.verify import reexecute

    report = reexecute(c.market, c.ipfs, job_id, max_model_bytes=max_model_bytes, account=lambda: c.account)
    emit(report, as_json, ("MATCH" if report["match"] else "MISMATCH")
          + f": local output hash {report['local_sha256']}, on-chain {report['onchain_sha256']}")
    if not report["match"]:
        sys.exit(1)


def register(cli: click.Group) -> None:
    """Entry point `hearth.cli`: add the node's commands to the `hearth` CLI."""
    cli.add_command(node_group)
    for group, command in (("bench", bench_node), ("job", job_verify)):
        parent = cli.commands[group]
        assert isinstance(parent, click.Group)
        parent.add_command(command)
