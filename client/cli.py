"""The `hearth` command line. Every command has --help; reporting commands take --json; the
exit code is 0 only on success; user mistakes print one clear line (and a hint), no traceback."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import click
from eth_account.signers.local import LocalAccount
from web3 import Web3

from client import deploy as deploy_mod
from client import devnet, keys
from client.chain import ZERO_ADDRESS, Market, Sender, connect
from client.cid import CID
from client.errors import ContractError, HearthError, UserError
from client.ipfs import DEFAULT_API, KuboClient, fetch_to_file

TOKEN = 10**18
CLIENT_DEV_ACCOUNT = 2  # dev account 0 deploys, 1 is the default provider, 2 the default client


def _emit(obj: Any, as_json: bool, human: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, default=str))
    elif human is not None:
        click.echo(human)


def _fail(msg: str, hint: str | None = None, code: int = 1) -> NoReturn:
    click.echo(f"error: {msg}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)
    sys.exit(code)


def _progress_printer() -> Callable[[int, int], None]:
    """Progress on stderr (stdout stays clean for scripts)."""

    def show(done: int, total: int) -> None:
        pct = f" {100 * done / total:5.1f}%" if total else ""
        click.echo(f"\r{done / 1e6:9.1f} MB{pct}", nl=False, err=True)
        if total and done >= total:
            click.echo("", err=True)

    return show


def parse_amount(text: str) -> int:
    """'1.5' HRT -> wei; UserError for zero, negative or malformed amounts."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise UserError(f"not an amount: {text!r}", hint="amounts are in HRT, e.g. 0.5") from None
    if not d.is_finite() or d <= 0:
        raise UserError(f"the amount must be positive, not {text}")
    wei = d * TOKEN
    if wei != wei.to_integral_value():
        raise UserError(f"{text} has more than 18 decimals")
    return int(wei)


def parse_duration(text: str) -> int:
    """'90', '90s', '5m', '2h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    mult = units.get(t[-1:])
    num = t[:-1] if mult else t
    try:
        value = float(num) * (mult or 1)
    except ValueError:
        raise UserError(f"not a duration: {text!r}", hint="use e.g. 30s, 5m, 2h") from None
    if value <= 0:
        raise UserError(f"the duration must be positive, not {text}")
    return int(value)


@dataclass
class Ctx:
    """Lazily built connections shared by a command."""

    network: str
    rpc_url: str | None
    ipfs_api: str
    keystore: Path | None
    account_index: int | None
    _w3: Web3 | None = None
    _market: Market | None = None
    _acct: LocalAccount | None = None
    _sender: Sender | None = None
    _ipfs: KuboClient | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            url = self.rpc_url or (devnet.rpc_url() if self.network == "devnet" else None)
            if url is None:
                raise UserError("no RPC URL", hint="pass --rpc-url URL (or set HEARTH_RPC_URL)")
            self._w3 = connect(url)
        return self._w3

    @property
    def market(self) -> Market:
        if self._market is None:
            d = deploy_mod.load(self.network)
            if not deploy_mod.is_live(self.w3, d):
                raise UserError(
                    f"the {self.network} contracts are not on this chain",
                    hint="run: hearth devnet up" if self.network == "devnet" else "check --rpc-url and --network",
                )
            self._market = d.market_binding(self.w3)
        return self._market

    @property
    def account(self) -> LocalAccount:
        if self._acct is None:
            if self.keystore is not None:
                self._acct = keys.load_keystore(keys.require_keystore(self.keystore), keys.password())
            elif self.network == "devnet":
                self._acct = devnet.dev_account(CLIENT_DEV_ACCOUNT if self.account_index is None else self.account_index)
            else:
                raise UserError("no account", hint="pass --keystore FILE (create one: hearth account new)")
        return self._acct

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            self._sender = Sender(self.w3, self.account)
        return self._sender

    @property
    def ipfs(self) -> KuboClient:
        if self._ipfs is None:
            self._ipfs = KuboClient(self.ipfs_api)
        return self._ipfs


pass_ctx = click.make_pass_decorator(Ctx)
json_opt = click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--network", envvar="HEARTH_NETWORK", default="devnet", show_default=True,
              help="deployment to use (deployments/<network>.json)")
@click.option("--rpc-url", envvar="HEARTH_RPC_URL", help="HTTP RPC endpoint (default: the running devnet)")
@click.option("--ipfs-api", envvar="HEARTH_IPFS_API", default=DEFAULT_API, show_default=True,
              help="Kubo RPC API URL (or the embedded daemon's)")
@click.option("--keystore", envvar="HEARTH_KEYSTORE", type=click.Path(path_type=Path),
              help="encrypted keystore file; password from HEARTH_PASSWORD or a prompt")
@click.option("--account", "account_index", type=click.IntRange(0, 9),
              help="devnet only: dev account index (default 2 for clients)")
@click.option("-v", "--verbose", is_flag=True, help="log more")
@click.version_option(package_name="hearth")
@click.pass_context
def cli(ctx: click.Context, network: str, rpc_url: str | None, ipfs_api: str, keystore: Path | None,
        account_index: int | None, verbose: bool) -> None:
    """Hearth: a decentralized market for AI inference."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Ctx(network, rpc_url, ipfs_api, keystore, account_index)


# ============================================================================ devnet / deploy


@cli.group("devnet")
def devnet_group() -> None:
    """Run the local Sepolia-like devnet (anvil, chain id 11155111)."""


@devnet_group.command("up")
@click.option("--port", default=devnet.DEFAULT_PORT, show_default=True, help="RPC port")
@click.option("--block-time", type=float, help="seconds per block (default: mine on every transaction)")
@json_opt
def devnet_up(port: int, block_time: float | None, as_json: bool) -> None:
    """Start anvil (or reuse the running one), deploy Hearth if needed, fund the dev accounts."""
    info = devnet.up(port, block_time)
    d = info.deployment
    obj = {"rpc_url": info.rpc_url, "chain_id": info.chain_id, "pid": info.pid, "reused_deployment": info.reused,
           "token": d.token, "market": d.market, "arbiter": d.arbiter, "deploy_block": d.deploy_block}
    _emit(obj, as_json, "\n".join([
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
    was = devnet.down()
    _emit({"stopped": was}, as_json, "devnet stopped" if was else "devnet was not running")


@devnet_group.command("status")
@json_opt
def devnet_status(as_json: bool) -> None:
    """Is the devnet running, where, at which block."""
    st = devnet.status()
    _emit(st, as_json, "\n".join(f"{k}: {v}" for k, v in st.items()))


@cli.command("deploy")
@click.option("--network", "net", required=True, help="name for deployments/NAME.json")
@click.option("--collateral-bps", default=1000, show_default=True, help="claimer collateral, bps of payment")
@click.option("--dispute-window", default="1h", show_default=True, help="time to dispute after completion (0 = none)")
@click.option("--min-stake", default="10", show_default=True, help="least provider stake, HRT")
@json_opt
@pass_ctx
def deploy_cmd(c: Ctx, net: str, collateral_bps: int, dispute_window: str, min_stake: str, as_json: bool) -> None:
    """Deploy HearthToken, SimpleArbiter and JobMarket with --keystore on --rpc-url."""
    if c.keystore is None and net != "devnet":
        raise UserError("deploying needs a funded account", hint="pass --keystore FILE (hearth account import)")
    window = 0 if dispute_window in ("0", "0s") else parse_duration(dispute_window)
    params = deploy_mod.MarketParams(collateral_bps=collateral_bps, dispute_window=window,
                                     min_stake=parse_amount(min_stake))
    d = deploy_mod.deploy(c.w3, c.sender, net, params)
    path = deploy_mod.save(d)
    _emit(asdict(d), as_json, f"deployed to chain {d.chain_id}: market {d.market}, token {d.token}; wrote {path}")


@cli.command("compile")
def compile_cmd() -> None:
    """Compile the contracts offline and write contracts/artifacts."""
    from client.compile import main as compile_main

    compile_main()


# ============================================================================ ipfs


@cli.group("ipfs")
def ipfs_group() -> None:
    """Add and fetch content (verified) and run the embedded IPFS daemon."""


@ipfs_group.command("daemon")
@click.option("--data", type=click.Path(path_type=Path), help="blockstore directory (default: ~/.hearth/ipfs)")
@click.option("--port", default=5001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (localhost by default)")
def ipfs_daemon(data: Path | None, port: int, host: str) -> None:
    """Serve the Kubo RPC subset and trustless gateway paths from an on-disk blockstore."""
    from client.ipfs_daemon import serve
    from client.paths import data_dir

    data = data or data_dir() / "ipfs"
    click.echo(f"embedded IPFS daemon: API http://{host}:{port}/api/v0, gateway http://{host}:{port}/ipfs/, data {data}",
               err=True)
    serve(data, host, port)


@ipfs_group.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--only-hash", "-n", is_flag=True, help="compute the CID locally; store nothing")
@click.option("--cid-version", type=click.IntRange(0, 1), default=0, show_default=True)
@click.option("--api", help="IPFS API URL (default: --ipfs-api)")
@pass_ctx
def ipfs_add(c: Ctx, path: Path, only_hash: bool, cid_version: int, api: str | None) -> None:
    """Add a file; prints its CID and nothing else (like `ipfs add -Q`)."""
    if only_hash:
        from client.cid import FileDAG

        dag = FileDAG(cid_version)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                dag.update(chunk)
        click.echo(str(dag.finish()))
        return
    with KuboClient(api or c.ipfs_api, timeout=600) as k:
        cid = k.add_file(path, cid_version, progress=_progress_printer() if sys.stderr.isatty() else None)
        click.echo(str(cid))


@ipfs_group.command("cat")
@click.argument("cid")
@click.option("--api", help="IPFS API URL (default: --ipfs-api)")
@pass_ctx
def ipfs_cat(c: Ctx, cid: str, api: str | None) -> None:
    """Print a file's bytes, every block verified against its CID."""
    from client.ipfs import iter_file

    root = CID.parse(cid)
    with KuboClient(api or c.ipfs_api) as k:
        out = sys.stdout.buffer
        for piece in iter_file(k, root):
            out.write(piece)
        out.flush()


@ipfs_group.command("get")
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="file to write")
@click.option("--api", help="IPFS API URL (default: --ipfs-api)")
@pass_ctx
def ipfs_get(c: Ctx, cid: str, output: Path, api: str | None) -> None:
    """Fetch a file to disk, verified, with progress."""
    root = CID.parse(cid)

    with KuboClient(api or c.ipfs_api, timeout=600) as k:
        n = fetch_to_file(k, root, output, _progress_printer())
    click.echo(f"\nwrote {n} bytes to {output}", err=True)


# ============================================================================ accounts


@cli.group("account")
def account_group() -> None:
    """Keys, balances, deposits and withdrawals."""


@account_group.command("new")
@json_opt
def account_new(as_json: bool) -> None:
    """Create a key and save it as an encrypted keystore."""
    from eth_account import Account

    acct = Account.create()
    path = keys.save_keystore(acct, keys.password(confirm=True))
    _emit({"address": acct.address, "keystore": str(path)}, as_json, f"{acct.address}\nkeystore: {path}")


@account_group.command("import")
@click.option("--key-file", type=click.Path(exists=True, path_type=Path), required=True,
              help="file holding a hex private key (never pass keys on the command line)")
@json_opt
def account_import(key_file: Path, as_json: bool) -> None:
    """Import a private key into an encrypted keystore."""
    from eth_account import Account

    try:
        acct = Account.from_key(key_file.read_text().strip())
    except (ValueError, TypeError):
        raise UserError(f"{key_file} does not hold a valid private key") from None
    path = keys.save_keystore(acct, keys.password(confirm=True))
    _emit({"address": acct.address, "keystore": str(path)}, as_json, f"{acct.address}\nkeystore: {path}")


@account_group.command("list")
@json_opt
@pass_ctx
def account_list(c: Ctx, as_json: bool) -> None:
    """Keystores here, and the dev accounts on the devnet."""
    rows: list[dict[str, Any]] = [{"address": a, "keystore": str(p)} for a, p in keys.list_keystores()]
    if c.network == "devnet":
        rows += [{"address": a.address, "dev_account": i} for i, a in enumerate(devnet.dev_accounts())]
    _emit(rows, as_json, "\n".join(
        f"{r['address']}  " + (f"keystore {r['keystore']}" if "keystore" in r else f"dev account {r['dev_account']}")
        for r in rows))


def _balances(c: Ctx, address: str) -> dict[str, Any]:
    a = c.market.account(address)
    return {"address": address, "wallet": c.market.token_balance(address) / TOKEN, "deposited": a.balance / TOKEN,
            "stake": a.stake / TOKEN, "open_jobs": a.open_jobs, "provider_status": a.status,
            "eth": c.w3.eth.get_balance(Web3.to_checksum_address(address)) / 1e18}


@account_group.command("balance")
@click.argument("address", required=False)
@json_opt
@pass_ctx
def account_balance(c: Ctx, address: str | None, as_json: bool) -> None:
    """Wallet tokens, deposited (internal) balance, stake and ETH."""
    b = _balances(c, address or c.account.address)
    _emit(b, as_json, "\n".join(f"{k:16} {v}" for k, v in b.items()))


@account_group.command("deposit")
@click.argument("amount")
@json_opt
@pass_ctx
def account_deposit(c: Ctx, amount: str, as_json: bool) -> None:
    """Move AMOUNT HRT from the wallet into the market (approve + deposit)."""
    wei = parse_amount(amount)
    wallet = c.market.token_balance(c.account.address)
    if wallet < wei:
        raise UserError(f"wallet holds {wallet / TOKEN:g} HRT, {(wei - wallet) / TOKEN:g} HRT short",
                        hint="on the devnet: hearth account faucet")
    c.sender.transact(c.market.token.functions.approve(c.market.address, wei))
    r = c.sender.transact(c.market.fn("deposit", wei))
    _emit({"deposited": wei / TOKEN, "tx": "0x" + bytes(r["transactionHash"]).hex()}, as_json,
          f"deposited {wei / TOKEN:g} HRT")


@account_group.command("withdraw")
@click.argument("amount")
@json_opt
@pass_ctx
def account_withdraw(c: Ctx, amount: str, as_json: bool) -> None:
    """Move AMOUNT HRT from the market back to the wallet."""
    wei = parse_amount(amount)
    r = c.sender.transact(c.market.fn("withdraw", wei))
    _emit({"withdrawn": wei / TOKEN, "tx": "0x" + bytes(r["transactionHash"]).hex()}, as_json,
          f"withdrew {wei / TOKEN:g} HRT")


@account_group.command("faucet")
@click.argument("amount", default="1000")
@click.option("--to", help="recipient (default: the current account)")
@json_opt
@pass_ctx
def account_faucet(c: Ctx, amount: str, to: str | None, as_json: bool) -> None:
    """Devnet only: get AMOUNT HRT (and gas ETH) from the deployer."""
    if c.network != "devnet":
        raise UserError("the faucet exists only on the devnet")
    wei = parse_amount(amount)
    dest = Web3.to_checksum_address(to or c.account.address)
    deployer = Sender(c.w3, devnet.dev_account(0))
    deployer.transact(c.market.token.functions.transfer(dest, wei))
    if c.w3.eth.get_balance(dest) < 10**17:
        c.w3.provider.make_request("anvil_setBalance", [dest, hex(10**19)])  # type: ignore[arg-type]
    _emit({"to": dest, "amount": wei / TOKEN}, as_json, f"sent {wei / TOKEN:g} HRT to {dest}")


# ============================================================================ models


@cli.group("model")
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
    from client import models

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file")
    ref = models.register(name or path.name.removesuffix(".gguf"), path)
    if not no_upload:
        with KuboClient(c.ipfs_api, timeout=600) as k:
            k.add_file(path, progress=_progress_printer() if sys.stderr.isatty() else None)
    _emit(asdict(ref), as_json, f"{ref.name}\n  cid    {ref.cid}\n  sha256 {ref.sha256}\n  size   {ref.size}")


@model_group.command("list")
@json_opt
def model_list(as_json: bool) -> None:
    """Named models."""
    from client import models

    rows = [asdict(m) for m in models.all_models()]
    _emit(rows, as_json, "\n".join(f"{m['name']:20} {m['cid']}  {m['size']} bytes" for m in rows))


# ============================================================================ jobs


@cli.group("job")
def job_group() -> None:
    """Submit, follow and manage inference jobs."""


def _print_update(u: Any, as_json: bool) -> None:
    if as_json:
        return
    d = u.detail
    extra = ""
    if u.state == "Claimed":
        extra = f" by {d['provider']}"
    elif u.state == "Settled":
        extra = f": provider paid {d['providerAmount'] / TOKEN:g} HRT"
    elif u.state == "Expired":
        extra = f": refunded {d['refund'] / TOKEN:g} HRT"
    click.echo(f"[{u.elapsed:6.1f}s] {u.state.lower()}{extra}", err=True)


@job_group.command("submit")
@click.option("--model", "model", default="smollm2-135m", show_default=True, help="model name or CID")
@click.option("--prompt", help="prompt text (sent as one user chat message; see --raw)")
@click.option("--raw", is_flag=True, help="send --prompt as a raw completion prompt, without the chat template")
@click.option("--messages", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file with chat messages [{role, content}]")
@click.option("--max-tokens", default=64, show_default=True, type=int)
@click.option("--temperature", default=0.0, show_default=True, type=float)
@click.option("--top-p", default=1.0, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--stop", multiple=True, help="stop string (repeatable)")
@click.option("--payment", default="0.01", show_default=True, help="HRT to pay")
@click.option("--provider", help="only this provider may claim")
@click.option("--claim-timeout", default="2m", show_default=True, help="time for a provider to claim")
@click.option("--timeout", "completion", default="5m", show_default=True, help="time for the claimer to complete")
@click.option("--no-wait", is_flag=True, help="post and exit")
@click.option("--auto-expire", is_flag=True, help="if nobody claims in time, expire the job to get the refund")
@json_opt
@pass_ctx
def job_submit(c: Ctx, model: str, prompt: str | None, messages: Path | None, max_tokens: int, temperature: float,
               top_p: float, seed: int, stop: tuple[str, ...], payment: str, provider: str | None, raw: bool,
               claim_timeout: str, completion: str, no_wait: bool, auto_expire: bool, as_json: bool) -> None:
    """Post a job with its payment locked, follow it live, and print the verified answer."""
    from client import jobs, models
    from client.jobspec import Params, make_spec

    msgs = None
    if messages is not None:
        try:
            msgs = json.loads(messages.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{messages} is not JSON: {e}") from None
    if prompt is not None and messages is not None:
        raise UserError("give --prompt or --messages, not both")
    if prompt is None and messages is None:
        raise UserError("nothing to ask", hint='pass --prompt "..." or --messages FILE')
    if prompt is not None and not raw:
        msgs, prompt = [{"role": "user", "content": prompt}], None
    if provider is not None and not Web3.is_address(provider):
        raise UserError(f"not an address: {provider}")
    ref = models.resolve(model)
    spec = make_spec(ref.cid, ref.sha256, prompt, msgs, Params(max_tokens, temperature, top_p, seed, stop))
    wei = parse_amount(payment)
    posted = jobs.post(c.market, c.sender, c.account, c.ipfs, spec, wei, parse_duration(claim_timeout),
                       parse_duration(completion), Web3.to_checksum_address(provider) if provider else ZERO_ADDRESS)
    out: dict[str, Any] = {"job_id": posted.job_id, "spec_cid": posted.spec_cid, "post_tx": posted.tx_hash,
                           "post_gas": posted.gas_used}
    if not as_json:
        click.echo(f"job {posted.job_id} posted (tx {posted.tx_hash}, {posted.gas_used} gas), "
                   f"{wei / TOKEN:g} HRT locked; spec {posted.spec_cid}", err=True)
    if no_wait:
        _emit(out, as_json, str(posted.job_id))
        return
    timeline = []
    try:
        for u in jobs.follow(c.market, posted.job_id):
            timeline.append({"state": u.state, "elapsed": round(u.elapsed, 3)})
            _print_update(u, as_json)
            if u.state == "DeadlinePassed":
                if u.detail["state"] == "Posted" and auto_expire:
                    _job_tx(c, "expire", posted.job_id)
                    _fail(f"no provider claimed job {posted.job_id} in time; expired it and refunded "
                          f"{wei / TOKEN:g} HRT to your deposit")
                what = "claimed" if u.detail["state"] == "Posted" else "completed"
                _fail(f"job {posted.job_id} was not {what} before its deadline",
                      hint=f"get your refund: hearth job expire {posted.job_id} (or submit with --auto-expire)")
    except KeyboardInterrupt:
        click.echo(f"\njob {posted.job_id} keeps running; follow it with: hearth job status {posted.job_id}", err=True)
        sys.exit(130)
    states = [t["state"] for t in timeline]
    if "Completed" not in states:
        _fail(f"job {posted.job_id} ended as {states[-1] if states else 'unknown'} without a result")
    vr = jobs.fetch_result(c.market, c.ipfs, posted.job_id)
    out.update(_result_json(vr), timeline=timeline)
    hist = c.market.history(posted.job_id)
    out["transactions"] = {n.removeprefix("Job").lower(): "0x" + bytes(e["transactionHash"]).hex() for n, e in hist}
    _emit(out, as_json, vr.result.output)


def _result_json(vr: Any) -> dict[str, Any]:
    return {"job_id": vr.job_id, "output": vr.result.output, "result_cid": vr.result_cid, "provider": vr.provider,
            "output_sha256": vr.output_hash, "verified": True, "finish_reason": vr.result.body["finish_reason"],
            "usage": vr.result.body["usage"], "timings": vr.result.body["timings"]}


@job_group.command("status")
@click.argument("job_id", type=int)
@json_opt
@pass_ctx
def job_status(c: Ctx, job_id: int, as_json: bool) -> None:
    """A job's state, deadline and event timeline."""
    slot = c.market.job(job_id)
    if slot.state == "None":
        raise UserError(f"job {job_id} does not exist on this market", hint="list jobs: hearth job list")
    posted = c.market.posted(job_id)
    events = []
    for name, ev in c.market.history(job_id):
        block = c.w3.eth.get_block(ev["blockNumber"])
        events.append({"event": name.removeprefix("Job"), "block": int(ev["blockNumber"]),
                       "time": int(block["timestamp"]), "tx": "0x" + bytes(ev["transactionHash"]).hex()})
    obj = {"job_id": job_id, "state": slot.state, "deadline": slot.deadline, "client": posted.client,
           "payment": posted.payment / TOKEN, "spec_cid": str(CID.parse(posted.spec_cid)),
           "model_cid": str(CID.parse(posted.model_cid)), "timeline": events}
    lines = [f"job {job_id}: {slot.state}", f"  client   {posted.client}", f"  payment  {posted.payment / TOKEN:g} HRT",
             f"  spec     {obj['spec_cid']}"]
    if slot.deadline:
        lines.append(f"  deadline {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(slot.deadline))} UTC")
    lines += [f"  {e['event']:10} block {e['block']}  tx {e['tx']}" for e in events]
    if slot.state == "Posted":
        lines.append(f"  (not claimed yet; after the deadline, refund with: hearth job expire {job_id})")
    _emit(obj, as_json, "\n".join(lines))


@job_group.command("list")
@click.option("--mine", is_flag=True, help="only jobs posted by the current account")
@click.option("--state", help="only jobs in this state (Posted, Claimed, Settled, ...)")
@json_opt
@pass_ctx
def job_list(c: Ctx, mine: bool, state: str | None, as_json: bool) -> None:
    """Jobs on this market."""
    from client.chain import posted_from_event

    m = c.market
    filt = {"client": c.account.address} if mine else {}
    rows = []
    for ev in m.logs("JobPosted", m.deploy_block, "latest", **filt):
        p = posted_from_event(ev)
        st = m.job(p.job_id).state
        if state and st.lower() != state.lower():
            continue
        rows.append({"job_id": p.job_id, "state": st, "client": p.client, "payment": p.payment / TOKEN})
    _emit(rows, as_json, "\n".join(f"{r['job_id']:6}  {r['state']:10} {r['payment']:g} HRT  {r['client']}"
                                   for r in rows) or "no jobs")


@job_group.command("result")
@click.argument("job_id", type=int)
@json_opt
@pass_ctx
def job_result(c: Ctx, job_id: int, as_json: bool) -> None:
    """Fetch and verify a job's result; prints the output."""
    from client import jobs

    vr = jobs.fetch_result(c.market, c.ipfs, job_id)
    _emit(_result_json(vr), as_json, vr.result.output)


def _job_tx(c: Ctx, fn_name: str, job_id: int, *extra: Any) -> str:
    terms = c.market.current_terms(job_id)
    fn = c.market.fn(fn_name, job_id, terms.as_tuple(), *extra)
    try:
        r = c.sender.transact(fn)
    except ContractError as e:
        # An idle automining devnet mines no blocks, so its clock stands still: when the
        # deadline has passed in real time, mine one empty block and try again.
        if e.name != "DeadlineNotPassed" or c.network != "devnet" or time.time() <= e.error_args["deadline"]:
            raise
        c.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        c.sender.resync()
        r = c.sender.transact(fn)
    return "0x" + bytes(r["transactionHash"]).hex()


@job_group.command("cancel")
@click.argument("job_id", type=int)
@json_opt
@pass_ctx
def job_cancel(c: Ctx, job_id: int, as_json: bool) -> None:
    """Cancel your unclaimed job; the payment returns to your deposit."""
    tx = _job_tx(c, "cancel", job_id)
    _emit({"job_id": job_id, "cancelled": True, "tx": tx}, as_json,
          f"job {job_id} cancelled; payment back in your deposit (hearth account withdraw AMOUNT)")


@job_group.command("expire")
@click.argument("job_id", type=int)
@json_opt
@pass_ctx
def job_expire(c: Ctx, job_id: int, as_json: bool) -> None:
    """End a job past its deadline: refund the client (plus a no-show claimer's collateral)."""
    tx = _job_tx(c, "expire", job_id)
    ev = c.market.logs("JobExpired", c.market.deploy_block, "latest", jobId=job_id)[-1]["args"]
    _emit({"job_id": job_id, "refund": ev["refund"] / TOKEN, "slashed": ev["slashed"] / TOKEN, "tx": tx}, as_json,
          f"job {job_id} expired; {ev['refund'] / TOKEN:g} HRT refunded to {ev['client']}")


@job_group.command("dispute")
@click.argument("job_id", type=int)
@json_opt
@pass_ctx
def job_dispute(c: Ctx, job_id: int, as_json: bool) -> None:
    """Dispute a completed job within the dispute window; the arbiter decides."""
    tx = _job_tx(c, "dispute", job_id)
    _emit({"job_id": job_id, "disputed": True, "tx": tx}, as_json, f"job {job_id} disputed; the arbiter decides")


@job_group.command("verify")
@click.argument("job_id", type=int)
@json_opt
@pass_ctx
def job_verify(c: Ctx, job_id: int, as_json: bool) -> None:
    """Re-run a job locally with the same model and params; exit 0 only if the output hash matches."""
    from node.verify import reexecute

    report = reexecute(c.market, c.ipfs, job_id)
    _emit(report, as_json, ("MATCH" if report["match"] else "MISMATCH")
          + f": local output hash {report['local_sha256']}, on-chain {report['onchain_sha256']}")
    if not report["match"]:
        sys.exit(1)


# ============================================================================ registration of node commands


def _register_extra() -> None:
    # The node and bench commands live beside the code they drive; loaded here so `hearth`
    # is one command. Imported lazily inside their functions, so the client needs no llama_cpp.
    from node.cli import bench_group, node_group, provider_group

    cli.add_command(node_group)
    cli.add_command(provider_group)
    cli.add_command(bench_group)


def main() -> None:
    """Entry point: run the CLI, turning Hearth errors into one-line messages."""
    _register_extra()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", code=130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except HearthError as e:
        _fail(str(e).split("\n  hint:")[0], e.hint)
    except KeyboardInterrupt:
        _fail("interrupted", code=130)

