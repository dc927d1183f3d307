"""`hearth account`: keys, balances, deposits and withdrawals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hearth.cli.common import Ctx, checksum_address, emit, json_opt, pass_ctx
from hearth.errors import UserError
from hearth.formats.units import TOKEN, parse_amount


@click.group("account")
def account_group() -> None:
    """Keys, balances, deposits and withdrawals."""


@account_group.command("new")
@json_opt
def account_new(as_json: bool) -> None:
    """Create a key and save it as an encrypted keystore."""
    from eth_account import Account

    from hearth import keys

    acct = Account.create()
    path = keys.save_keystore(acct, keys.password(confirm=True))
    emit({"address": acct.address, "keystore": str(path)}, as_json, f"{acct.address}\nkeystore: {path}")


@account_group.command("import")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="file holding a hex private key (never pass keys on the command line)")
@json_opt
def account_import(key_file: Path, as_json: bool) -> None:
    """Import a private key into an encrypted keystore."""
    from eth_account import Account

    from hearth import keys

    try:
        acct = Account.from_key(key_file.read_text().strip())
    except (ValueError, TypeError):
        raise UserError(f"{key_file} does not hold a valid private key") from None
    path = keys.save_keystore(acct, keys.password(confirm=True))
    emit({"address": acct.address, "keystore": str(path)}, as_json, f"{acct.address}\nkeystore: {path}")


@account_group.command("list")
@json_opt
@pass_ctx
def account_list(c: Ctx, as_json: bool) -> None:
    """Keystores here, and the dev accounts on the devnet."""
    from hearth import keys
    from hearth.dev import devnet

    rows: list[dict[str, Any]] = [{"address": a, "keystore": str(p)} for a, p in keys.list_keystores()]
    if c.network == "devnet":
        rows += [{"address": a.address, "dev_account": i} for i, a in enumerate(devnet.dev_accounts())]
    emit(rows, as_json, "\n".join(
        f"{r['address']}  " + (f"keystore {r['keystore']}" if "keystore" in r else f"dev account {r['dev_account']}")
        for r in rows))


def _balances(c: Ctx, address: str) -> dict[str, Any]:
    from web3 import Web3

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
    b = _balances(c, checksum_address(address) if address is not None else c.account.address)
    emit(b, as_json, "\n".join(f"{k:16} {v}" for k, v in b.items()))


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
    emit({"deposited": wei / TOKEN, "tx": "0x" + bytes(r["transactionHash"]).hex()}, as_json,
          f"deposited {wei / TOKEN:g} HRT")


@account_group.command("withdraw")
@click.argument("amount")
@json_opt
@pass_ctx
def account_withdraw(c: Ctx, amount: str, as_json: bool) -> None:
    """Move AMOUNT HRT from the market back to the wallet."""
    wei = parse_amount(amount)
    r = c.sender.transact(c.market.fn("withdraw", wei))
    emit({"withdrawn": wei / TOKEN, "tx": "0x" + bytes(r["transactionHash"]).hex()}, as_json,
          f"withdrew {wei / TOKEN:g} HRT")


@account_group.command("faucet")
@click.argument("amount", default="1000")
@click.option("--to", help="recipient (default: the current account)")
@json_opt
@pass_ctx
def account_faucet(c: Ctx, amount: str, to: str | None, as_json: bool) -> None:
    """Devnet only: get AMOUNT HRT (and gas ETH) from the deployer."""
    from hearth.chain.sender import Sender
    from hearth.dev import devnet

    if c.network != "devnet":
        raise UserError("the faucet exists only on the devnet")
    wei = parse_amount(amount)
    dest = checksum_address(to) if to is not None else c.account.address
    deployer = Sender(c.w3, devnet.dev_account(0))
    deployer.transact(c.market.token.functions.transfer(dest, wei))
    if c.w3.eth.get_balance(dest) < 10**17:
        c.w3.provider.make_request("anvil_setBalance", [dest, hex(10**19)])  # type: ignore[arg-type]
    emit({"to": dest, "amount": wei / TOKEN}, as_json, f"sent {wei / TOKEN:g} HRT to {dest}")


@account_group.command("encryption-key")
@click.option("--rotate", is_flag=True, help="publish a new version (old versions still open old jobs)")
@json_opt
@pass_ctx
def account_encryption_key(c: Ctx, rotate: bool, as_json: bool) -> None:
    """Publish this account's X25519 encryption key for private jobs (if it has none on chain,
    or a new version with --rotate) and show it. Providers need one to be sent private jobs."""
    from hearth import privacy

    kp, sent = privacy.ensure_published(c.market, c.sender, c.account, rotate=rotate)
    emit({"address": c.account.address, "key": "0x" + kp.public.hex(), "version": kp.version, "published": sent},
         as_json, f"{c.account.address}: encryption key 0x{kp.public.hex()} (version {kp.version})"
         + (", published now" if sent else ""))
