"""`hearth bench`: gas, CID and fetch speed, CLI start-up and job latency on a chain with a block time
(the node adds `hearth bench node`)."""

from __future__ import annotations

import json

import click

from hearth.cli.common import emit, json_opt


@click.group("bench")
def bench_group() -> None:
    """Measure gas, CID and fetch speed, start-up, job latency and node overhead."""


@bench_group.command("gas")
@json_opt
def bench_gas(as_json: bool) -> None:
    """Deploy on a fresh anvil and print the gas of every external function and the lifecycle."""
    from hearth.dev.gas import gas_table

    table = gas_table()
    emit(table, as_json, "\n".join(f"{k:40} {v:>9}" for k, v in table.items()))


@bench_group.command("cid")
@click.option("--size-mb", default=1024, show_default=True, help="file size, MiB")
@json_opt
def bench_cid(size_mb: int, as_json: bool) -> None:
    """CID of a big file: MB/s and peak memory, beside plain sha256 and ipfs_cid."""
    from hearth.dev.bench import cid_bench

    r = cid_bench(size_mb)
    emit(r, as_json, json.dumps(r, indent=2))


@bench_group.command("fetch")
@click.option("--runs", default=3, show_default=True, help="timed runs of each, alternating")
@json_opt
def bench_fetch(runs: int, as_json: bool) -> None:
    """Verified fetch of the bundled model from a fresh embedded IPFS daemon vs a plain /cat: MB/s."""
    from hearth.dev.bench import fetch_bench

    r = fetch_bench(runs)
    emit(r, as_json, f"verified fetch {r['verified']['mb_per_s']:7.1f} MB/s\n"
                     f"plain cat      {r['plain_cat']['mb_per_s']:7.1f} MB/s\n"
                     f"ratio          {r['verified_vs_plain']:7.3f}  ({r['file_mb']} MB, best of {runs})")


@bench_group.command("startup")
@click.option("--runs", default=20, show_default=True, help="timed runs of each command")
@json_opt
def bench_startup(runs: int, as_json: bool) -> None:
    """Start-up time of `hearth --version` and `hearth --help`: median and spread over fresh processes."""
    from hearth.dev.bench import startup_bench

    r = startup_bench(runs)
    emit(r, as_json, "\n".join(f"{k:18} median {v['median_ms']:7.1f} ms  (min {v['min_ms']:.1f}, max {v['max_ms']:.1f})"
                               for k, v in r["commands"].items()))


@bench_group.command("latency")
@click.option("--block-time", type=click.FloatRange(min=0, min_open=True), default=12, show_default=True,
              help="anvil's seconds per block (Sepolia and mainnet: 12)")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=1), default=3, show_default=True,
              help="jobs submitted one after another")
@click.option("--max-tokens", type=click.IntRange(min=1), default=8, show_default=True, help="tokens per job")
@json_opt
def bench_latency(block_time: float, n_jobs: int, max_tokens: int, as_json: bool) -> None:
    """Submit to verified answer on a chain with a block time: seconds and blocks per job and
    their medians (one local node, the path of `hearth job submit`)."""
    from hearth.dev.latency import latency_bench

    r = latency_bench(block_time, n_jobs, max_tokens, progress=lambda m: click.echo(m, err=True))
    lines = [f"job {j['job_id']:>3}: {j['seconds']:6.1f} s  {j['blocks']:>2} blocks  "
             f"({', '.join(f'{k} +{v}' for k, v in j['event_blocks'].items())})" for j in r["per_job"]]
    lines.append(f"median:  {r['median_seconds']:6.1f} s  {r['median_blocks']:>2} blocks  "
                 f"({n_jobs} jobs of {max_tokens} tokens, {block_time:g}-second blocks)")
    emit(r, as_json, "\n".join(lines))
