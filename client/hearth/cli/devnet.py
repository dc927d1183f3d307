"""`hearth devnet`, `hearth deploy` and `hearth compile`: the local chain and contract tooling."""

from __future__ import annotations

from dataclasses import asdict

import click

from hearth.cli.common import Ctx, emit, json_opt, pass_ctx
from hearth.errors import UserError
from hearth.formats.units import parse_amount, parse_duration
from hearth.settings import DEFAULT_RPC_PORT


@click.group("devnet")
def devnet_group() -> None:
    """Run the local Sepolia-like devnet (anvil, chain id 11155111)."""


@devnet_group.command("up")
@click.option("--port", default=DEFAULT_RPC_PORT, show_default=True, help="RPC port")
@click.option("--block-time", type=float, help="seconds per block (default: mine on every transaction)")
@click.option("--audit-rate", type=click.FloatRange(0, 1), help="share of completed jobs audited at random "
              "(default 0.1; a different rate deploys a fresh market)")
@json_opt
def devnet_up(port: int, block_time: float | None, audit_rate: float | None, as_json: bool) -> None:
    """Start anvil (or reuse the running one), deploy Hearth if needed, fund the dev accounts."""
    from hearth.dev import devnet

    info = devnet.up(port, block_time, audit_rate)
    d = info.deployment
    obj = {"rpc_url": info.rpc_url, "chain_id": info.chain_id, "pid": info.pid, "reused_deployment": info.reused,
           "token": d.token, "market": d.market, "arbiter": d.arbiter, "deploy_block": d.deploy_block}
    emit(obj, as_json, "\n".join([
        f"devnet up: {info.rpc_url} (chain id {info.chain_id}, anvil pid {info.pid})",
        f"  HearthToken   {d.token}",
        f"  JobMarket     {d.market}",
        f"  SimpleArbiter {d.arbiter}",
        f"  {'reused the saved chain' if info.reused else 'deployed and funded dev accounts'};"
        f" recorded in deployments/devnet.json",
    ]))


@devnet_group.command("down")
@json_opt
def devnet_down(as_json: bool) -> None:
    """Stop the devnet; its chain stays on disk for the next `up`."""
    from hearth.dev import devnet

    was = devnet.down()
    emit({"stopped": was}, as_json, "devnet stopped" if was else "devnet was not running")


@devnet_group.command("status")
@json_opt
def devnet_status(as_json: bool) -> None:
    """Is the devnet running, where, at which block."""
    from hearth.dev import devnet

    st = devnet.status()
    emit(st, as_json, "\n".join(f"{k}: {v}" for k, v in st.items()))


@click.command("deploy")
@click.option("--network", "net", required=True, help="name for deployments/NAME.json")
@click.option("--collateral-bps", default=150_000, show_default=True,
              help="claimer collateral, bps of payment, all lost on proven fraud (150000 = 15x)")
@click.option("--dispute-window", default="1h", show_default=True, help="time to audit a result before it is paid")
@click.option("--audit-rate", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="share of completed jobs audited at random")
@click.option("--min-stake", default="10", show_default=True, help="least provider stake, HRT")
@json_opt
@pass_ctx
def deploy_cmd(c: Ctx, net: str, collateral_bps: int, dispute_window: str, audit_rate: float, min_stake: str,
               as_json: bool) -> None:
    """Deploy HearthToken, SimpleArbiter and JobMarket with --keystore on --rpc-url."""
    from hearth.chain import deployments
    from hearth.dev import deploy as deploy_mod

    if c.keystore is None and net != "devnet":
        raise UserError("deploying needs a funded account", hint="pass --keystore FILE (hearth account import)")
    params = deploy_mod.MarketParams(collateral_bps=collateral_bps, dispute_window=parse_duration(dispute_window),
                                     audit_bps=round(audit_rate * 10_000), min_stake=parse_amount(min_stake))
    d = deploy_mod.deploy(c.w3, c.sender, net, params)
    path = deployments.save(d)
    emit(asdict(d), as_json, f"deployed to chain {d.chain_id}: market {d.market}, token {d.token}; wrote {path}")


@click.command("compile")
def compile_cmd() -> None:
    """Compile the contracts offline and write the artifacts (hearth/artifacts; test-only: contracts/artifacts)."""
    from hearth.dev.compile import main as compile_main

    compile_main()
