"""`hearth provider`: the on-chain provider record (stake, models, price, unbonding)."""

from __future__ import annotations

from typing import Any

import click
from eth_utils import keccak

from hearth.cli.common import PROVIDER_DEV_ACCOUNT, Ctx, emit, json_opt, pass_ctx, tx_hash
from hearth.errors import UserError
from hearth.formats.cid import CID
from hearth.formats.units import TOKEN, format_amount, parse_amount


@click.group("provider")
def provider_group() -> None:
    """Manage the on-chain provider record (stake, models, price, unbonding)."""


def _model_cids(names: tuple[str, ...]) -> list[bytes]:
    from hearth.models import resolve

    out = []
    for n in names:
        try:
            out.append(CID.parse(n).to_bytes())
        except UserError:
            out.append(CID.parse(resolve(n).cid).to_bytes())
    return out


def _tx(c: Ctx, name: str, *args: Any) -> str:
    return tx_hash(c.sender.transact(c.market.fn(name, *args)))


def _provider_ctx(c: Ctx) -> Ctx:
    if c.account_index is None and c.keystore is None and c.network == "devnet":
        c.account_index = PROVIDER_DEV_ACCOUNT
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
    from hearth import privacy
    from hearth.jobs import deposit_kept

    c = _provider_ctx(c)
    # everything that can be refused is checked before the deposit, a transaction of its own
    wei, min_price, cids = parse_amount(stake), parse_amount(price), _model_cids(models)
    m, me = c.market, c.account.address
    a = m.account(me)
    if a.status == "Active":
        raise UserError(f"{me} is already registered as a provider",
                        hint="change it with hearth provider price / hearth provider models; stop with hearth provider unbond")
    if a.status == "Unbonding":
        raise UserError(f"{me} is unbonding", hint="after the unbonding delay: hearth provider withdraw, then register again")
    least = int(m.call(m.contract.functions.minStake()))
    if wei < least:
        raise UserError(f"a stake of {stake} HRT is below this market's minimum of {format_amount(least)} HRT",
                        hint=f"pass --stake {format_amount(least)} or more")
    short = max(0, wei - a.balance)
    wallet = m.token_balance(me)
    if wallet < short:
        raise UserError(f"stake {stake} HRT but only {format_amount(a.balance)} HRT deposited and {format_amount(wallet)} "
                        f"HRT in the wallet: {format_amount(short - wallet)} HRT missing",
                        hint="get tokens (on the devnet: hearth account faucet), then retry")
    if short:
        c.sender.transact(m.token.functions.approve(m.address, short))
        c.sender.transact(m.fn("deposit", short))
    # A class of its own until the node starts: the node measures its real one (llama.cpp build,
    # instruction sets, settings) and declares it, so audits never compare it with another
    # machine's outputs on a guess.
    placeholder = keccak(b"hearth: class not declared yet " + bytes.fromhex(me[2:]))
    with deposit_kept(short):
        tx = _tx(c, "register", wei, min_price, placeholder, cids)

    # private jobs are sealed to this key: without one, clients could send this provider only public jobs
    kp, _ = privacy.ensure_published(c.market, c.sender, c.account)
    emit({"provider": c.account.address, "stake": wei / TOKEN, "tx": tx, "encryption_key_version": kp.version},
         as_json, f"registered {c.account.address} with {wei / TOKEN:g} HRT stake; encryption key version {kp.version}")


@provider_group.command("models")
@click.argument("action", type=click.Choice(["add", "remove", "list"]))
@click.argument("models", nargs=-1)
@json_opt
@pass_ctx
def provider_models(c: Ctx, action: str, models: tuple[str, ...], as_json: bool) -> None:
    """Add, remove or list the models this provider serves."""
    c = _provider_ctx(c)
    if action == "list":
        from hearth.models import all_models

        rows = [{"name": m.name, "cid": m.cid, "served": c.market.serves(c.account.address, CID.parse(m.cid).to_bytes())}
                for m in all_models()]
        emit(rows, as_json, "\n".join(f"{r['name']:20} {r['cid']} {'served' if r['served'] else '-'}" for r in rows))
        return
    if not models:
        raise UserError("name at least one model")
    tx = _tx(c, "addModels" if action == "add" else "removeModels", _model_cids(models))
    emit({"tx": tx}, as_json, f"models {action}ed" + ("" if action == "add" else
         "; every offer signed so far is void (a running node publishes new ones, for the models it "
         "still serves, within a minute)"))


@provider_group.command("price")
@click.argument("price")
@json_opt
@pass_ctx
def provider_price(c: Ctx, price: str, as_json: bool) -> None:
    """Set the minimum price per job, HRT."""
    c = _provider_ctx(c)
    tx = _tx(c, "setPrice", parse_amount(price))
    emit({"tx": tx}, as_json, f"price set to {price} HRT")


@provider_group.command("unbond")
@json_opt
@pass_ctx
def provider_unbond(c: Ctx, as_json: bool) -> None:
    """Stop taking jobs; the stake can be withdrawn after the unbonding delay."""
    c = _provider_ctx(c)
    tx = _tx(c, "unbond")
    end = c.market.account(c.account.address).unbonding_end
    emit({"tx": tx, "unbonding_end": end}, as_json, f"unbonding; withdraw the stake after unix time {end}")


@provider_group.command("withdraw")
@json_opt
@pass_ctx
def provider_withdraw(c: Ctx, as_json: bool) -> None:
    """After unbonding, with no open jobs: move the stake back to the deposit."""
    c = _provider_ctx(c)
    tx = _tx(c, "withdrawStake")
    emit({"tx": tx}, as_json, "stake moved to your deposit (hearth account withdraw AMOUNT to take it out)")


@provider_group.command("offers")
@click.option("--model", default="smollm2-135m", show_default=True, help="model name or CID")
@json_opt
@pass_ctx
def provider_offers(c: Ctx, model: str, as_json: bool) -> None:
    """The live provider offers for a model, best first (the order `hearth job submit` prefers
    them in for a job they fit): price, completion window, open-job limit, expiry, record (claims
    decided so far: a job still running counts neither way)."""
    from hearth import models
    from hearth.jobs import chain_now
    from hearth.offers import best_first, live_offers

    found = live_offers(c.market, c.ipfs, CID.parse(models.resolve(model).cid).to_bytes(), chain_now(c.market))
    found.sort(key=best_first)
    rows = [{"provider": x.offer.provider, "price": x.offer.price / TOKEN, "completion_window": x.offer.completion_window,
             "max_open_jobs": x.offer.max_open_jobs, "expiry": x.offer.expiry, "claimed": x.claimed,
             "completed": x.completed, "declined": x.declined, "slashed": x.slashed, "score": round(x.score, 4)}
            for x in found]
    emit(rows, as_json, "\n".join(
        f"{r['provider']}  {r['price']:g} HRT  window {r['completion_window']} s  up to {r['max_open_jobs']} open  "
        f"{r['completed']}/{r['claimed']} completed ({r['declined']} declined, slashed {r['slashed']} times)"
        for r in rows) or "no live offers for this model")


@provider_group.command("withdraw-offers")
@json_opt
@pass_ctx
def provider_withdraw_offers(c: Ctx, as_json: bool) -> None:
    """Void every offer this provider has signed so far (a running node sees it within a minute
    and publishes none until it restarts)."""
    c = _provider_ctx(c)
    nonce = int(c.market.call(c.market.contract.functions.offerNonce(c.account.address))) + 1
    tx = _tx(c, "withdrawOffers", nonce)
    emit({"tx": tx, "offer_nonce": nonce}, as_json, f"offers withdrawn (offers must carry nonce {nonce} from now on)")
