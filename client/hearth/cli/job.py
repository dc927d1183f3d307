"""`hearth job`: submit, follow, verify and manage inference jobs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from hearth.chain.states import STATES
from hearth.cli.common import JOB_ID, Ctx, emit, fail, json_opt, pass_ctx, tx_hash
from hearth.errors import HearthError, UserError
from hearth.formats.units import TOKEN, parse_amount, parse_duration


@click.group("job")
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
@click.option("--payment", default="0.01", show_default=True,
              help="HRT to pay (the most: under an offer, its price)")
@click.option("--provider", help="only this provider may run the job (under its offer if it has a live one)")
@click.option("--no-offers", is_flag=True, help="post an open job for any provider to claim, instead of taking the "
              "best live provider offer (one transaction that assigns the job)")
@click.option("--public", is_flag=True, help="a plaintext job: spec and result readable by anyone (default: "
              "encrypted, readable by you and the provider(s) it is sealed to)")
@click.option("--claim-timeout", default="2m", show_default=True, help="time for a provider to claim")
@click.option("--timeout", "completion", default="5m", show_default=True, help="time for the claimer to complete")
@click.option("--no-wait", is_flag=True, help="post and exit")
@click.option("--auto-expire", is_flag=True, help="if nobody claims in time, expire the job to get the refund")
@json_opt
@pass_ctx
def job_submit(c: Ctx, model: str, prompt: str | None, messages: Path | None, max_tokens: int, temperature: float,
               top_p: float, seed: int, stop: tuple[str, ...], payment: str, provider: str | None, no_offers: bool,
               public: bool, raw: bool, claim_timeout: str, completion: str, no_wait: bool, auto_expire: bool,
               as_json: bool) -> None:
    """Post a job with its payment locked, follow it live, and print the verified answer.

    Under a provider's offer unless --no-offers or none fits; a job that provider declines (one it
    will not run) is posted again, once, as an open job for any provider to claim."""
    from web3 import Web3

    from hearth import jobs, models
    from hearth.chain.types import ZERO_ADDRESS
    from hearth.formats.jobspec import Params, make_spec

    msgs = None
    if messages is not None:
        try:
            msgs = json.loads(messages.read_bytes())
        except UnicodeDecodeError:
            raise UserError(f"{messages} is not UTF-8 text", hint="--messages takes a JSON file of chat messages") from None
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
    wei, claim_s, window_s = parse_amount(payment), parse_duration(claim_timeout), parse_duration(completion)
    use_offers, declined = not no_offers, list[int]()
    while True:  # a job an offer's provider declines is posted again once, as an open job
        posted = jobs.post(c.market, c.sender, c.account, c.ipfs, spec, wei, claim_s, window_s,
                           Web3.to_checksum_address(provider) if provider else ZERO_ADDRESS,
                           pins=c.pins, private=not public, use_offers=use_offers)
        out: dict[str, Any] = {"job_id": posted.job_id, "spec_cid": posted.spec_cid, "post_tx": posted.tx_hash,
                               "post_gas": posted.gas_used, "private": not public, "assigned": posted.assigned or None,
                               "payment": posted.payment / TOKEN}
        if posted.readers:
            out["readers"] = list(posted.readers)
        if declined:
            out["declined"] = declined
        if posted.spec_pins:
            out["spec_pins"] = posted.spec_pins
            failed = {k: v for k, v in posted.spec_pins.items() if v.startswith("failed")}
            if failed and not as_json:
                click.echo(f"warning: remote pin of the spec {failed}", err=True)
        if not as_json:
            click.echo(f"job {posted.job_id} posted (tx {posted.tx_hash}, {posted.gas_used} gas), "
                       f"{posted.payment / TOKEN:g} HRT locked; spec {posted.spec_cid}"
                       + (f"; assigned to {posted.assigned} under its offer" if posted.assigned else "")
                       + (f" (private: sealed to you and {len(posted.readers) - 1} provider(s))" if posted.readers else ""),
                       err=True)
        if no_wait:
            emit(out, as_json, str(posted.job_id))
            return
        timeline: list[dict[str, Any]] = []
        out["timeline"] = timeline
        history: list[tuple[str, Any]] = []  # the job's events as follow() saw them: read once
        try:
            for u in jobs.follow(c.market, posted.job_id):
                timeline.append({"state": u.state, "elapsed": round(u.elapsed, 3)})
                if u.event is not None:
                    history.append(("Job" + u.state, u.event))
                _print_update(u, as_json)
                if u.state == "DeadlinePassed":
                    if u.detail["state"] == "Posted" and auto_expire:
                        out["expire_tx"] = _job_tx(c, "expire", posted.job_id)
                        _fail_posted(out, as_json, "Expired", f"no provider claimed job {posted.job_id} in time; expired "
                                     f"it and refunded {posted.payment / TOKEN:g} HRT to your deposit")
                    what = "claimed" if u.detail["state"] == "Posted" else "completed"
                    _fail_posted(out, as_json, u.detail["state"], f"job {posted.job_id} was not {what} before its deadline",
                                 hint=f"get your refund: hearth job expire {posted.job_id} (or submit with --auto-expire)")
        except KeyboardInterrupt:
            if as_json:
                emit({**out, "state": timeline[-1]["state"] if timeline else "Posted", "error": "interrupted"}, True)
            click.echo(f"\njob {posted.job_id} keeps running; follow it with: hearth job status {posted.job_id}", err=True)
            sys.exit(130)
        if any(t["state"] == "Declined" for t in timeline) and posted.assigned and provider is None and use_offers:
            click.echo(f"the provider declined job {posted.job_id} (it will not run it; the payment is back in "
                       "your deposit): posting it again as an open job, for any provider to claim", err=True)
            declined.append(posted.job_id)
            use_offers = False
            continue
        break
    states = [t["state"] for t in timeline]
    if "Declined" in states:
        _fail_posted(out, as_json, "Declined", f"the provider declined job {posted.job_id} (it will not run it); the "
                     "payment is back in your deposit", hint="submit again: another offer, or --no-offers for an open job")
    if "Completed" not in states:
        end = states[-1] if states else "unknown"
        _fail_posted(out, as_json, end, f"job {posted.job_id} ended as {end} without a result")
    try:
        vr = jobs.fetch_result(c.market, c.ipfs, posted.job_id, history, c.fallbacks, lambda: c.account)
    except HearthError as e:
        if as_json:  # printed as an error line by main()
            emit({**out, "state": "Completed", "error": str(e).split("\n  hint:")[0]}, True)
        raise
    out.update(_result_json(vr))
    out["transactions"] = {n.removeprefix("Job").lower(): tx_hash(e) for n, e in history}
    window_end = int(next(e for n, e in history if n == "JobCompleted")["args"]["disputeDeadline"])
    out["audit_window_ends"] = window_end
    if not as_json:
        click.echo(f"the provider is paid when the audit window closes ({time.strftime('%H:%M:%S', time.localtime(window_end))})"
                   f" or an audit upholds the result; to have it checked before then: hearth job dispute {posted.job_id}",
                   err=True)
    emit(out, as_json, vr.result.output)


def _fail_posted(out: dict[str, Any], as_json: bool, state: str, msg: str, hint: str | None = None) -> NoReturn:
    """Fail once a job is posted: with --json, stdout still gets the job (id, post tx, its state, the error)."""
    if as_json:
        emit({**out, "state": state, "error": msg}, True)
    fail(msg, hint)


def _result_json(vr: Any) -> dict[str, Any]:
    return {"job_id": vr.job_id, "output": vr.result.output, "result_cid": vr.result_cid, "provider": vr.provider,
            "output_sha256": vr.output_hash, "verified": True, "finish_reason": vr.result.body["finish_reason"],
            "usage": vr.result.body["usage"], "timings": vr.result.body["timings"], "private": vr.private}


@job_group.command("status")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_status(c: Ctx, job_id: int, as_json: bool) -> None:
    """A job's state, deadline and event timeline."""
    slot = c.market.job(job_id)
    if slot.state == "None":
        raise UserError(f"job {job_id} does not exist on this market", hint="list jobs: hearth job list")
    from hearth.chain.types import posted_record

    # shown, not used: a CID that does not parse (the market takes any bytes) is shown as hex
    posted = posted_record(c.market.posted_log(job_id))
    events = []
    for name, ev in c.market.history(job_id):
        block = c.w3.eth.get_block(ev["blockNumber"])
        events.append({"event": name.removeprefix("Job"), "block": int(ev["blockNumber"]),
                       "time": int(block["timestamp"]), "tx": "0x" + bytes(ev["transactionHash"]).hex()})
    obj = {"job_id": job_id, "state": slot.state, "deadline": slot.deadline, "client": posted["client"],
           "payment": posted["payment"] / TOKEN, "spec_cid": posted["spec_cid"], "model_cid": posted["model_cid"],
           "timeline": events}
    lines = [f"job {job_id}: {slot.state}", f"  client   {obj['client']}", f"  payment  {obj['payment']:g} HRT",
             f"  spec     {obj['spec_cid']}"]
    if slot.deadline:
        lines.append(f"  deadline {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(slot.deadline))} UTC")
    lines += [f"  {e['event']:10} block {e['block']}  tx {e['tx']}" for e in events]
    if slot.state == "Posted":
        lines.append(f"  (not claimed yet; after the deadline, refund with: hearth job expire {job_id})")
    from hearth.errors import ContractError
    from hearth.jobs import chain_now

    if slot.state == "Completed" and slot.deadline < chain_now(c.market):
        try:  # the draw reads the completion block's hash, readable once a later block exists
            selected: bool | None = c.market.audit_selected(job_id, c.market.current_terms(job_id),
                                                            c.market.completion(job_id))
        except ContractError:
            selected = None
        if selected is not None:
            obj["drawn_for_audit"] = selected
            lines.append(f"  (window over; drawn for audit: start it with hearth job audit {job_id})" if selected else
                         f"  (window over; not drawn for audit: pay the provider with hearth job settle {job_id})")
    if slot.state in ("Audited", "Disputed"):
        au = c.market.audit(job_id)
        drawn = [a for a in au.auditors if int(a, 16)]
        obj["audit"] = {"round": au.round, "phase": au.phase, "auditors": drawn, "requester": au.requester,
                        "bond": au.bond / TOKEN}
        lines.append(f"  audit    round {au.round}, waiting for {au.phase.lower() if slot.state == 'Audited' else 'the arbiter'};"
                     f" auditors {', '.join(drawn) or 'none'}")
        if slot.state == "Audited" and au.phase == "Draw":
            lines.append(f"  (an auditor is to be drawn: anyone may, with hearth job finalize {job_id})")
    emit(obj, as_json, "\n".join(lines))


@job_group.command("list")
@click.option("--mine", is_flag=True, help="only jobs posted by the current account")
@click.option("--state", type=click.Choice(STATES[1:], case_sensitive=False), help="only jobs in this state")
@json_opt
@pass_ctx
def job_list(c: Ctx, mine: bool, state: str | None, as_json: bool) -> None:
    """Jobs on this market."""
    from hearth.chain.types import posted_record

    m = c.market
    filt = {"client": c.account.address} if mine else {}
    rows = []
    for ev in m.logs("JobPosted", m.deploy_block, "latest", **filt):
        p = posted_record(ev)  # whatever its CID bytes: a job that is not a CID is listed too
        st = m.job(p["job_id"]).state
        if state and st != state:
            continue
        rows.append({"job_id": p["job_id"], "state": st, "client": p["client"], "payment": p["payment"] / TOKEN})
    emit(rows, as_json, "\n".join(f"{r['job_id']:6}  {r['state']:10} {r['payment']:g} HRT  {r['client']}"
                                   for r in rows) or "no jobs")


@job_group.command("result")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_result(c: Ctx, job_id: int, as_json: bool) -> None:
    """Fetch and verify a job's result; prints the output. Read from --ipfs-api, else from the
    remote pins configured (--pin-service / --pin-kubo-api), verified either way. A private job's
    result is decrypted with the job's key, which only its readers hold."""
    from hearth import jobs

    vr = jobs.fetch_result(c.market, c.ipfs, job_id, fallbacks=c.fallbacks, account=lambda: c.account)
    emit(_result_json(vr), as_json, vr.result.output)


@job_group.command("share")
@click.argument("job_id", type=JOB_ID)
@click.option("--to", "to", required=True, help="the account to hand the job's key to (the arbiter, an auditor)")
@json_opt
@pass_ctx
def job_share(c: Ctx, job_id: int, to: str, as_json: bool) -> None:
    """Hand a private job's key to another account (sealed to its published encryption key, in a
    JobKeyShared event): it can then read the job's prompt and answer. Only a share from the
    job's client or provider counts."""
    from web3 import Web3

    from hearth import privacy
    from hearth.formats import sealed

    if not Web3.is_address(to):
        raise UserError(f"not an address: {to}")
    posted = c.market.posted(job_id)
    env = sealed.parse_envelope(c.ipfs.cat(posted.spec_cid, max_size=1 << 20))
    if env is None:
        raise UserError(f"job {job_id} is public: there is no key to share")
    tx = privacy.share_key(c.market, c.sender, job_id, privacy.job_key(c.market, c.account, posted, env), to)
    emit({"job_id": job_id, "shared_with": Web3.to_checksum_address(to), "tx": tx}, as_json,
         f"job {job_id}'s key shared with {Web3.to_checksum_address(to)} (tx {tx})")


def _job_tx(c: Ctx, fn_name: str, job_id: int, *extra: Any) -> str:
    terms = c.market.current_terms(job_id)
    # Calls on a completed job pass back what `complete` fixed, like the terms.
    done = () if fn_name in ("cancel", "expire") else (c.market.completion(job_id).as_tuple(),)
    fn = c.market.fn(fn_name, job_id, terms.as_tuple(), *done, *extra)
    from hearth.dev.devnet import transact_past_deadline

    r = transact_past_deadline(c.sender, fn, c.network == "devnet")
    return "0x" + bytes(r["transactionHash"]).hex()


@job_group.command("cancel")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_cancel(c: Ctx, job_id: int, as_json: bool) -> None:
    """Cancel your unclaimed job; the payment returns to your deposit."""
    tx = _job_tx(c, "cancel", job_id)
    emit({"job_id": job_id, "cancelled": True, "tx": tx}, as_json,
          f"job {job_id} cancelled; payment back in your deposit (hearth account withdraw AMOUNT)")


@job_group.command("expire")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_expire(c: Ctx, job_id: int, as_json: bool) -> None:
    """End a job nobody claimed, or nobody delivered, by its deadline: refund the client (plus up
    to the payment again out of a no-show claimer's collateral)."""
    tx = _job_tx(c, "expire", job_id)
    _, ev = c.market.history(job_id)[-1]
    a = ev["args"]
    emit({"job_id": job_id, "refund": a["refund"] / TOKEN, "slashed": a["slashed"] / TOKEN, "tx": tx}, as_json,
         f"job {job_id} expired; {a['refund'] / TOKEN:g} HRT refunded to {a['client']}")


@job_group.command("settle")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_settle(c: Ctx, job_id: int, as_json: bool) -> None:
    """Pay the provider of a completed job once its window has closed and it was not drawn for
    audit (anyone may; the provider's node does it by itself)."""
    tx = _job_tx(c, "settle", job_id)
    emit({"job_id": job_id, "settled": True, "tx": tx}, as_json, f"job {job_id} settled; the provider is paid")


@job_group.command("finalize")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_finalize(c: Ctx, job_id: int, as_json: bool) -> None:
    """Move an audit or dispute on (anyone may; nodes do it by themselves): draw a pending
    auditor or tiebreaker, or end a phase or an arbitration whose deadline has passed."""
    tx = _job_tx(c, "finalize", job_id)
    state = c.market.job(job_id).state
    emit({"job_id": job_id, "state": state, "tx": tx}, as_json, f"job {job_id} moved on: now {state}")


@job_group.command("audit")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_audit(c: Ctx, job_id: int, as_json: bool) -> None:
    """Start the random audit of a completed job drawn for one, once its window is over (anyone
    may; a provider's node starts its own, and a client whose provider does not can): an auditor
    of the provider's class re-runs it. Until then the job is neither paid nor refunded."""
    started = c.market.job(job_id).state == "Audited" and c.market.audit(job_id).phase == "Draw"
    tx = None if started else _job_tx(c, "startAudit", job_id)  # started, its auditor not drawn: draw it
    if c.market.audit(job_id).phase == "Draw":  # its hash had aged out: drawn from a later block's
        try:
            _draw_auditor(c, job_id)
        except HearthError as e:
            why = str(e).splitlines()[0]
            emit({"job_id": job_id, "state": "Audited", "tx": tx, "auditor": None, "draw_error": why}, as_json,
                 f"job {job_id}: audit started; its auditor is not drawn yet ({why}): hearth job finalize {job_id}")
            return
    state = c.market.job(job_id).state
    au = c.market.audit(job_id)
    auditor = au.auditors[0] if state == "Audited" else None
    emit({"job_id": job_id, "state": state, "tx": tx, "auditor": auditor}, as_json,
         f"job {job_id}: " + {"Audited": f"auditor {auditor} drawn", "Disputed": "nobody able to audit it: the arbiter decides",
                              "Settled": "nobody in the provider's class to audit it: the result stands, the provider is paid"
                              }.get(state, f"now {state}"))


@job_group.command("dispute")
@click.argument("job_id", type=JOB_ID)
@json_opt
@pass_ctx
def job_dispute(c: Ctx, job_id: int, as_json: bool) -> None:
    """Ask for an audit of your completed job within its window (only the job's client may),
    posting the market's dispute bond from your deposit: a provider of the same reproducibility
    class, drawn from the hash of the block of your request, re-runs the job. If the result
    stands, the bond pays the auditors (the rest goes to the provider); if not, you get payment
    and bond back and the provider loses its collateral. With no auditor to draw, the arbiter
    decides."""
    bond = int(c.market.call(c.market.contract.functions.disputeBond()))
    held = c.market.account(c.account.address).balance
    if held < bond and c.market.job(job_id).state == "Completed":  # else the market's error says why not
        raise UserError(f"the dispute bond is {bond / TOKEN:g} HRT and your deposit holds {held / TOKEN:g} HRT",
                        hint=f"hearth account deposit {(bond - held) / TOKEN:g}, then retry")
    tx = _job_tx(c, "dispute", job_id)
    try:
        auditor = _draw_auditor(c, job_id)
    except HearthError as e:  # the dispute stands; anyone may draw (the provider's node does)
        emit({"job_id": job_id, "disputed": True, "bond": bond / TOKEN, "tx": tx, "auditor": None,
              "draw_error": str(e).splitlines()[0]}, as_json,
             f"job {job_id}: audit requested with a {bond / TOKEN:g} HRT bond; its auditor is not drawn yet "
             f"({str(e).splitlines()[0]}): the provider's node draws it, or: hearth job finalize {job_id}")
        return
    emit({"job_id": job_id, "disputed": True, "bond": bond / TOKEN, "tx": tx, "auditor": auditor}, as_json,
         f"job {job_id}: audit requested with a {bond / TOKEN:g} HRT bond; "
         + (f"auditor {auditor} drawn" if auditor else "no auditor to draw: the arbiter decides")
         + f"; follow it: hearth job status {job_id}")


def _draw_auditor(c: Ctx, job_id: int, wait: float = 120) -> str | None:
    """Draw the auditor of a dispute: `finalize`, once a block follows the dispute's (its hash
    draws; anyone may send it, and the provider's node does too). The auditor, or None if the
    job went to the arbiter."""
    from hearth.errors import ContractError

    end = time.monotonic() + wait
    while c.market.audit(job_id).phase == "Draw":
        try:
            _job_tx(c, "finalize", job_id)
        except ContractError as e:  # the next block is not there yet, or another party drew first
            if c.market.audit(job_id).phase != "Draw":
                break
            if e.name != "RandomnessNotReady":
                raise
            if time.monotonic() > end:
                raise UserError(f"no new block for {wait:.0f} s") from e
            time.sleep(2)
    au = c.market.audit(job_id)
    drawn = au.auditors[0]
    return None if int(drawn, 16) == 0 else drawn
