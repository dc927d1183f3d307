"""`hearth bench`: gas, CID and fetch speed, CLI start-up, job latency on a chain with a block time
and the economics of random audits (the node adds `hearth bench node`)."""

from __future__ import annotations

import json
from typing import Any

import click

from hearth.cli.common import emit, json_opt


@click.group("bench")
def bench_group() -> None:
    """Measure gas, CID and fetch speed, start-up, job latency, audits and node overhead."""


@bench_group.command("gas")
@click.option("--breakdown", is_flag=True,
              help="instead: where the offer lifecycle's gas goes (calldata, storage, logs...), from step traces")
@json_opt
def bench_gas(breakdown: bool, as_json: bool) -> None:
    """Deploy on a fresh anvil and print the gas of every external function and the lifecycle."""
    from hearth.dev.gas import measure

    table, parts = measure(trace=breakdown)
    if not breakdown:
        emit(table, as_json, "\n".join(f"{k:40} {v:>9}" for k, v in table.items()))
        return
    fields = list(next(iter(parts.values())))
    lines = [f"{'':38}" + "".join(f"{f:>15}" for f in fields)]
    lines += [f"{k[:38]:38}" + "".join(f"{v[f]:>15,}" for f in fields) for k, v in parts.items()]
    emit(parts, as_json, "\n".join(lines))


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
@click.option("--no-offers", is_flag=True, help="post open jobs that the node claims (the path before offers)")
@json_opt
def bench_latency(block_time: float, n_jobs: int, max_tokens: int, no_offers: bool, as_json: bool) -> None:
    """Submit to verified answer on a chain with a block time: seconds and blocks per job and
    their medians (one local node, the path of `hearth job submit`)."""
    from hearth.dev.latency import latency_bench

    r = latency_bench(block_time, n_jobs, max_tokens, not no_offers, progress=lambda m: click.echo(m, err=True))
    lines = [f"job {j['job_id']:>3}: {j['seconds']:6.1f} s  {j['blocks']:>2} blocks  "
             f"({', '.join(f'{k} +{v}' for k, v in j['event_blocks'].items())})" for j in r["per_job"]]
    lines.append(f"median:  {r['median_seconds']:6.1f} s  {r['median_blocks']:>2} blocks  "
                 f"({n_jobs} jobs of {max_tokens} tokens, {block_time:g}-second blocks, "
                 f"{'under the node offer' if r['offers'] else 'open jobs claimed'})")
    emit(r, as_json, "\n".join(lines))


@bench_group.command("audits")
@click.option("--jobs", "n_jobs", type=click.IntRange(min=10), default=1200, show_default=True,
              help="jobs posted, three quarters of them to the cheating provider")
@click.option("--cheat-share", type=click.FloatRange(0, 1), default=2 / 3,
              show_default="2/3", help="share of its jobs on which the cheater commits to a wrong output")
@json_opt
def bench_audits(n_jobs: int, cheat_share: float, as_json: bool) -> None:
    """Random audits on the real market (fresh anvil, scripted providers, default parameters):
    does a provider that cheats on some of its jobs lose money, and is an honest one never slashed?"""
    from hearth.dev.auditsim import simulate

    r = simulate(n_jobs, cheat_share, progress=lambda m: click.echo(m, err=True))
    emit(r, as_json, audits_text(r))


def audits_text(r: dict[str, Any]) -> str:
    """`hearth bench audits`' figures as text, amounts in HRT."""
    from hearth.formats.units import TOKEN

    def hrt(wei: float) -> str:
        return f"{wei / TOKEN:+.2f}"

    c = r["cheater"]
    lines = [f"{r['jobs']} jobs, {r['audited']} audited at random ({r['audit_rate']:.1%}; the market draws "
             f"{r['audit_bps'] / 100:g}%), {r['mismatches']} mismatches, {r['disputed']} to the arbiter, "
             f"{len(r['refunded_jobs'])} refunded",
             f"{'provider':10} {'jobs':>5} {'payments':>9} {'audit rewards':>13} {'slashed':>9} {'net':>9}"]
    for p in r["providers"]:
        lines.append(f"{p['role']:10} {p['jobs']:>5} {hrt(p['payments']):>9} {hrt(p['audit_rewards']):>13} "
                     f"{hrt(-p['slashed']):>9} {hrt(p['net']):>9}")
    lines += [f"cheater: cheated on {c['cheated']} jobs, caught on {c['caught']}; on those jobs it was paid "
              f"{hrt(c['paid_on_cheated'])} and lost {hrt(-c['slashed_on_cheated'])}: net {hrt(c['net_on_cheated'])} HRT "
              f"({hrt(c['net_per_cheated_job'])} per cheated job; expected at q = p: {hrt(c['expected_per_cheated_job'])})",
              f"cheater in all: {hrt(c['total'])} HRT, where doing every job honestly would have brought "
              f"{hrt(c['honest_equivalent'])}"]
    return "\n".join(lines)
