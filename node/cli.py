"""`hearth node`, `hearth provider` and `hearth bench` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from client.cid import CID
from client.cli import Ctx, _emit, json_opt, parse_amount, pass_ctx
from client.errors import UserError

TOKEN = 10**18


@click.group("node")
def node_group() -> None:
    """Run a provider node."""


@node_group.command("init")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("hearth-node.toml"), show_default=True)
@click.option("--force", is_flag=True, help="overwrite an existing file")
def node_init(output: Path, force: bool) -> None:
    """Write a commented config file with every setting and its default."""
    from node.config import commented_config

    if output.exists() and not force:
        raise UserError(f"{output} exists", hint="pass --force to overwrite")
    output.write_text(commented_config())
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
    import logging

    from pydantic import ValidationError

    from node.config import load_settings
    from node.main import NodeService

    logging.getLogger("hearth.node").setLevel(logging.INFO)
    try:
        s = load_settings(
            config_file, network=c.network, rpc_url=c.rpc_url,
            ipfs_api=c.ipfs_api if c.ipfs_api != "http://127.0.0.1:5001" else None,
            keystore=c.keystore, models=list(models) or None,
            min_price=parse_amount(min_price) if min_price else None, api_port=api_port, dev_account=dev_account,
            n_gpu_layers=n_gpu_layers, data_dir=data_dir,
        )
    except ValidationError as e:
        raise UserError(f"bad node settings: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
    NodeService(s).run_forever()


# ============================================================================ provider


@click.group("provider")
def provider_group() -> None:
    """Manage the on-chain provider record (stake, models, price, unbonding)."""


def _model_cids(names: tuple[str, ...]) -> list[bytes]:
    from client.models import resolve

    out = []
    for n in names:
        try:
            out.append(CID.parse(n).to_bytes())
        except UserError:
            out.append(CID.parse(resolve(n).cid).to_bytes())
    return out


def _tx(c: Ctx, name: str, *args: Any) -> str:
    r = c.sender.transact(c.market.fn(name, *args))
    return "0x" + bytes(r["transactionHash"]).hex()


def _provider_ctx(c: Ctx) -> Ctx:
    if c.account_index is None and c.keystore is None and c.network == "devnet":
        c.account_index = 1  # the devnet's default provider account
    return c


@provider_group.command("register")
@click.option("--stake", default="100", show_default=True, help="stake, HRT (taken from the deposit; "
              "deposited from the wallet first if short)")
@click.option("--price", default="0.001", show_default=True, help="minimum price per job, HRT")
@click.option("--model", "models", multiple=True, default=("smollm2-135m",), show_default=True)
@json_opt
@pass_ctx
def provider_register(c: Ctx, stake: str, price: str, models: tuple[str, ...], as_json: bool) -> None:
    """Register as a provider with stake, a minimum price and the models served."""
    c = _provider_ctx(c)
    wei = parse_amount(stake)
    bal = c.market.account(c.account.address).balance
    if bal < wei:
        c.sender.transact(c.market.token.functions.approve(c.market.address, wei - bal))
        c.sender.transact(c.market.fn("deposit", wei - bal))
    tx = _tx(c, "register", wei, parse_amount(price), _model_cids(models))
    _emit({"provider": c.account.address, "stake": wei / TOKEN, "tx": tx}, as_json,
          f"registered {c.account.address} with {wei / TOKEN:g} HRT stake")


@provider_group.command("models")
@click.argument("action", type=click.Choice(["add", "remove", "list"]))
@click.argument("models", nargs=-1)
@json_opt
@pass_ctx
def provider_models(c: Ctx, action: str, models: tuple[str, ...], as_json: bool) -> None:
    """Add, remove or list the models this provider serves."""
    c = _provider_ctx(c)
    if action == "list":
        from client.models import all_models

        rows = [{"name": m.name, "cid": m.cid, "served": c.market.serves(c.account.address, CID.parse(m.cid).to_bytes())}
                for m in all_models()]
        _emit(rows, as_json, "\n".join(f"{r['name']:20} {r['cid']} {'served' if r['served'] else '-'}" for r in rows))
        return
    if not models:
        raise UserError("name at least one model")
    tx = _tx(c, "addModels" if action == "add" else "removeModels", _model_cids(models))
    _emit({"tx": tx}, as_json, f"models {action}ed")


@provider_group.command("price")
@click.argument("price")
@json_opt
@pass_ctx
def provider_price(c: Ctx, price: str, as_json: bool) -> None:
    """Set the minimum price per job, HRT."""
    c = _provider_ctx(c)
    tx = _tx(c, "setPrice", parse_amount(price))
    _emit({"tx": tx}, as_json, f"price set to {price} HRT")


@provider_group.command("unbond")
@json_opt
@pass_ctx
def provider_unbond(c: Ctx, as_json: bool) -> None:
    """Stop taking jobs; the stake can be withdrawn after the unbonding delay."""
    c = _provider_ctx(c)
    tx = _tx(c, "unbond")
    end = c.market.account(c.account.address).unbonding_end
    _emit({"tx": tx, "unbonding_end": end}, as_json, f"unbonding; withdraw the stake after unix time {end}")


@provider_group.command("withdraw")
@json_opt
@pass_ctx
def provider_withdraw(c: Ctx, as_json: bool) -> None:
    """After unbonding, with no open jobs: move the stake back to the deposit."""
    c = _provider_ctx(c)
    tx = _tx(c, "withdrawStake")
    _emit({"tx": tx}, as_json, "stake moved to your deposit (hearth account withdraw AMOUNT to take it out)")


# ============================================================================ bench


@click.group("bench")
def bench_group() -> None:
    """Measure gas, CID speed and node overhead."""


@bench_group.command("gas")
@json_opt
def bench_gas(as_json: bool) -> None:
    """Deploy on a fresh anvil and print the gas of every external function and the lifecycle."""
    from node.bench import gas_table

    table = gas_table()
    _emit(table, as_json, "\n".join(f"{k:40} {v:>9}" for k, v in table.items()))


@bench_group.command("cid")
@click.option("--size-mb", default=1024, show_default=True, help="file size, MiB")
@json_opt
def bench_cid(size_mb: int, as_json: bool) -> None:
    """CID of a big file: MB/s and peak memory, beside plain sha256 and ipfs_cid."""
    from node.bench import cid_bench

    r = cid_bench(size_mb)
    _emit(r, as_json, json.dumps(r, indent=2))


@bench_group.command("node")
@click.option("--jobs", "n_jobs", default=50, show_default=True, help="queued short jobs for the throughput run")
@click.option("--overhead-jobs", default=10, show_default=True, help="sequential jobs for the overhead median")
@json_opt
def bench_node(n_jobs: int, overhead_jobs: int, as_json: bool) -> None:
    """Node overhead, tokens/s ratio against plain llama-cpp-python, and jobs/minute."""
    from node.bench import node_bench

    r = node_bench(n_jobs, overhead_jobs)
    _emit(r, as_json, json.dumps(r, indent=2))
