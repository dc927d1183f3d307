"""Bad input and failures part way through a command: one clear line (no traceback), exit 1, and
no tokens moved without the user being told how to get them back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak
from hearth import jobs, keys
from hearth.chain.sender import Sender
from hearth.cli import account as account_cli
from hearth.cli import main
from hearth.dev.devnet import dev_account
from hearth.dev.localnet import Localnet
from hearth.errors import ContractError, HearthError, UserError
from hearth.formats import offers
from hearth.formats.cid import CID
from hearth.formats.jobspec import Params, make_spec
from hearth.formats.units import SUPPLY, TOKEN, format_amount, parse_amount, parse_duration
from hearth.ipfs.fetch import fetch_to_file
from hearth.ipfs.kubo import KuboClient
from hearth.models import bundled

HEARTH = [sys.executable, "-m", "hearth"]
UNUSED_PROVIDER = dev_account(8).address
NO_SUCH_CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"


def hearth(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with no chain at all: for what must fail before it needs one."""
    return subprocess.run([*HEARTH, "--rpc-url", "http://127.0.0.1:9", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**os.environ, "HEARTH_PASSWORD": "pw"})


def clear(r: subprocess.CompletedProcess[str], *words: str, code: int = 1) -> None:
    assert r.returncode == code, (r.args, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, (r.args, r.stderr)
    for w in words:
        assert w in r.stderr, (r.args, w, r.stderr)


def funds(env: Localnet, idx: int) -> tuple[int, int]:
    """(deposit, wallet) of a dev account."""
    a = dev_account(idx).address
    return env.market.account(a).balance, env.market.token_balance(a)


# ---------------------------------------------------------------- pure


def test_durations_and_amounts_out_of_range_are_user_errors() -> None:
    for text in ("inf", "nan", "-inf", "1e400", "infm"):
        with pytest.raises(UserError, match="not a duration"):
            parse_duration(text)
    for text in ("1e60", str(SUPPLY // TOKEN + 1), "1000000000.000000000000000001"):
        with pytest.raises(UserError, match="more than all the HRT"):
            parse_amount(text)
    assert parse_amount(str(SUPPLY // TOKEN)) == SUPPLY
    for wei in (1, 10**18, 100 * 10**18, 12_345_678_901_234_567_890, SUPPLY):
        assert parse_amount(format_amount(wei)) == wei


def test_a_file_that_is_not_a_keystore_says_so(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("not json")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "list").write_text("[1, 2]")
    (tmp_path / "other").write_text('{"a": 1}')
    for name in ("text", "binary", "list", "other"):
        with pytest.raises(UserError, match="is not a keystore file"):
            keys.load_keystore(tmp_path / name, "pw")
    with pytest.raises(UserError, match="is a directory"):
        keys.load_keystore(tmp_path, "pw")
    ks = tmp_path / "ks.json"
    ks.write_text(json.dumps(Account.encrypt(Account.create().key, "right")))
    with pytest.raises(UserError, match="wrong password"):
        keys.load_keystore(ks, "wrong")


def test_bad_paths_and_values_before_any_chain_are_clear(tmp_path: Path) -> None:
    (tmp_path / "bad.bin").write_bytes(b"\xff\xfe\x00 not utf-8")
    (tmp_path / "bad.toml").write_text("this is = = not toml")
    (tmp_path / "ks.json").write_text("not json")
    clear(hearth("node", "init", "-o", "/nonexistent/dir/x.toml"), "cannot write /nonexistent/dir/x.toml")
    clear(hearth("node", "init", "-o", str(tmp_path)), "is a directory", code=2)
    clear(hearth("node", "run", "--config", str(tmp_path / "bad.toml")), "is not valid TOML")
    clear(hearth("account", "import", "--key-file", str(tmp_path)), "is a directory", code=2)
    clear(hearth("--keystore", str(tmp_path), "account", "balance"), "is a directory")
    clear(hearth("--keystore", str(tmp_path / "ks.json"), "account", "balance"), "is not a keystore file")
    clear(hearth("job", "submit", "--messages", str(tmp_path / "bad.bin")), "is not UTF-8")
    clear(hearth("job", "submit", "--prompt", "hi", "--timeout", "inf"), "not a duration")
    clear(hearth("job", "submit", "--prompt", "hi", "--claim-timeout", "nan"), "not a duration")
    clear(hearth("job", "list", "--state", "Bogus"), "Bogus", "posted", code=2)
    clear(hearth("job", "status", str(2**256)), "JOB_ID", code=2)
    clear(hearth("job", "cancel", "-5"), code=2)
    clear(hearth("job", "verify", str(2**300)), "JOB_ID", code=2)
    # nothing to fetch from: the path is refused before the daemon is asked, and no .part is left
    clear(hearth("ipfs", "get", NO_SUCH_CID, "-o", "/nonexistent/dir/x"), "cannot write /nonexistent/dir/x")
    clear(hearth("ipfs", "get", NO_SUCH_CID, "-o", str(tmp_path)), "is a directory", code=2)
    (tmp_path / "f.txt").write_text("hello")
    r = hearth("ipfs", "add", "--only-hash", "--json", str(tmp_path / "f.txt"))
    assert r.returncode == 0 and CID.parse(json.loads(r.stdout)["cid"])


def test_an_unexpected_error_is_one_line_that_says_it_is_a_bug(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(account_cli.account_new, "callback", boom)
    monkeypatch.delenv("HEARTH_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["hearth", "account", "new"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 1
    assert err.splitlines()[0] == "error: RuntimeError: kaboom"
    assert "this is a bug in hearth" in err and "-v" in err and "Traceback" not in err
    # the traceback on demand: -v or HEARTH_DEBUG=1
    monkeypatch.setattr(sys, "argv", ["hearth", "-v", "account", "new"])
    with pytest.raises(RuntimeError, match="kaboom"):
        main()
    monkeypatch.setattr(sys, "argv", ["hearth", "account", "new"])
    monkeypatch.setenv("HEARTH_DEBUG", "1")
    with pytest.raises(RuntimeError, match="kaboom"):
        main()
    monkeypatch.delenv("HEARTH_DEBUG")

    def interrupted(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(account_cli.account_new, "callback", interrupted)
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err  # click turns Ctrl-C into its Abort
    assert e.value.code == 130 and "aborted" in err and "Traceback" not in err
    monkeypatch.setattr(sys, "argv", ["hearth", "account", "new", "--help"])  # click's own exit: no error
    main()
    out = capsys.readouterr()
    assert "Usage:" in out.out and out.err == ""


# ---------------------------------------------------------------- against a market


def _publish_offer(env: Localnet, idx: int, price: int) -> None:
    """A signed offer of dev account `idx` (registered) for the bundled model, published."""
    m, acct = env.market, dev_account(idx)
    model_cid = CID.parse(bundled().cid).to_bytes()
    f = m.contract.functions
    offer = offers.Offer(acct.address, keccak(model_cid), bytes(m.call(f.reproClassOf(acct.address))), price, 60, 5,
                         int(time.time()) + 3600, int(m.call(f.offerNonce(acct.address))))
    chain_id = int(env.w3.eth.chain_id)
    with KuboClient(env.ipfs_api) as k:
        cid = k.add(offers.document([offers.sign(acct, offer, chain_id, m.address)], chain_id, m.address), pin=True)
    Sender(env.w3, acct).transact(m.fn("publishOffers", cid.to_bytes()))


def _fail_on(monkeypatch: pytest.MonkeyPatch, fn_name: str) -> None:
    """Make every transaction calling `fn_name` fail, as a revert would (the others go through)."""
    transact = Sender.transact

    def failing(self: Sender, fn: Any, *a: Any, **k: Any) -> Any:
        if fn.fn_name == fn_name:
            raise ContractError("SomethingChanged", {})
        return transact(self, fn, *a, **k)

    monkeypatch.setattr(Sender, "transact", failing)


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: Localnet, *args: str) -> str:
    """`hearth ARGS` in this process (to fail a transaction on purpose); its stderr."""
    for k in ("HEARTH_HOME", "HEARTH_DEPLOYMENTS_DIR"):
        monkeypatch.setenv(k, env.env[k])
    monkeypatch.setattr(sys, "argv", ["hearth", "--rpc-url", env.rpc, "--ipfs-api", env.ipfs_api, *args])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_cli_failures_move_no_funds_or_say_where_they_are(env: Localnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    provider, client = 3, 4
    # provider register: everything it can be refused for is checked before its deposit
    before = funds(env, provider)
    for args, words in [
        (["--price", "abc"], ["not an amount"]),
        (["--model", "nosuch"], ["unknown model"]),
        (["--stake", "1"], ["below this market's minimum of 10 HRT", "--stake 10"]),
        (["--stake", "2000000"], ["missing", "faucet"]),
        (["--stake", "1e60"], ["more than all the HRT"]),
    ]:
        clear(env.hearth("provider", "register", *args, account=provider), *words)
        assert funds(env, provider) == before, args
    ks = tmp_path / "ks.json"  # an account with nothing at all
    ks.write_text(json.dumps(Account.encrypt(Account.create().key, "pw")))
    clear(env.hearth("--keystore", str(ks), "provider", "register", account=None, extra_env={"HEARTH_PASSWORD": "pw"}),
          "missing", "faucet")
    assert env.hearth_json("provider", "register", "--stake", "20", account=provider)["stake"] == 20
    registered = funds(env, provider)
    clear(env.hearth("provider", "register", "--stake", "20", account=provider), "already registered")
    assert funds(env, provider) == registered

    # job submit under an offer: the deposit is a transaction of its own, so the job's bounds
    # are checked before it
    price = 2 * 10**15
    _publish_offer(env, provider, price)
    before = funds(env, client)
    for args, words in [
        (["--timeout", "2d"], ["longer than this market allows (86400 s)", "--timeout 86400s"]),
        (["--timeout", "1e12d"], ["longer than this market allows"]),
        (["--claim-timeout", "1e30d"], ["longer than the market can record"]),
        (["--timeout", "inf"], ["not a duration"]),
    ]:
        clear(env.hearth("job", "submit", "--public", "--prompt", "hi", *args, account=client), *words)
        assert funds(env, client) == before, args

    # a post that fails after the deposit says how much stayed there and how to take it out
    ref = bundled()
    spec = make_spec(ref.cid, ref.sha256, None, [{"role": "user", "content": "hi"}], Params())
    with monkeypatch.context() as mp, KuboClient(env.ipfs_api) as k:
        _fail_on(mp, "postJobWithOffer")
        acct = dev_account(client)
        with pytest.raises(HearthError) as exc:
            jobs.post(env.market, Sender(env.w3, acct), acct, k, spec, 10**16, 120, 300)
    assert "SomethingChanged" in str(exc.value)
    assert "0.002 HRT was moved to your deposit: hearth account withdraw 0.002" in str(exc.value)
    assert funds(env, client) == (before[0] + price, before[1] - price)
    env.hearth_json("account", "withdraw", "0.002", account=client)
    assert funds(env, client) == before

    # ... and so does a registration that fails after its deposit
    other = 5
    before = funds(env, other)
    with monkeypatch.context() as mp:
        _fail_on(mp, "register")
        err = _main(mp, capsys, env, "--account", str(other), "provider", "register", "--stake", "20")
    assert "SomethingChanged" in err and "20 HRT was moved to your deposit: hearth account withdraw 20" in err
    assert funds(env, other) == (before[0] + 20 * TOKEN, before[1] - 20 * TOKEN)
    env.hearth_json("account", "withdraw", "20", account=other)
    assert funds(env, other) == before

    # an unbonding provider cannot register again until it has withdrawn
    env.hearth_json("provider", "unbond", account=provider)
    unbonding = funds(env, provider)
    clear(env.hearth("provider", "register", account=provider), "is unbonding", "hearth provider withdraw")
    assert funds(env, provider) == unbonding

    # job submit --json: a job posted and then failed still prints its JSON
    before = funds(env, client)
    r = env.hearth("job", "submit", "--public", "--no-offers", "--prompt", "hi", "--provider", UNUSED_PROVIDER,
                   "--claim-timeout", "2s", "--auto-expire", "--json", account=client)
    clear(r, "expired it and refunded")
    out = json.loads(r.stdout)
    assert out["state"] == "Expired" and out["post_tx"].startswith("0x") and "expired" in out["error"]
    assert sum(funds(env, client)) == sum(before)  # refunded to the deposit
    r = env.hearth("job", "submit", "--public", "--no-offers", "--prompt", "hi", "--provider", UNUSED_PROVIDER,
                   "--claim-timeout", "2s", "--json", account=client)
    clear(r, "not claimed before its deadline")
    out = json.loads(r.stdout)
    assert out["state"] == "Posted" and out["error"].startswith(f"job {out['job_id']} was not claimed")

    # job ids, states, addresses, amounts
    assert [j["job_id"] for j in env.hearth_json("job", "list", "--state", "posted")] == [out["job_id"]]
    clear(env.hearth("job", "list", "--state", "Bogus"), "Bogus", code=2)
    clear(env.hearth("job", "result", "99"), "job 99 does not exist")
    clear(env.hearth("job", "verify", "99"), "job 99 does not exist")
    clear(env.hearth("job", "status", str(2**256)), code=2)
    before = funds(env, client)
    clear(env.hearth("account", "withdraw", "1e60", account=client), "more than all the HRT")
    clear(env.hearth("account", "faucet", "1e60", account=client), "more than all the HRT")
    clear(env.hearth("account", "balance", "0x123"), "not an address: 0x123")
    clear(env.hearth("account", "faucet", "--to", "0xzz"), "not an address: 0xzz")
    assert funds(env, client) == before

    # ipfs get to a path it cannot write: a clear error, no .part left behind
    with KuboClient(env.ipfs_api) as k:
        cid = k.add(b"hello hearth", pin=True)
        (tmp_path / "adir").mkdir()
        with pytest.raises(UserError, match="cannot write"):
            fetch_to_file(k, cid, tmp_path / "adir")
    assert not (tmp_path / "adir.part").exists()
    clear(env.hearth("ipfs", "get", str(cid), "-o", str(tmp_path / "nowhere" / "x")), "cannot write")
    assert env.hearth_json("ipfs", "add", str(_write(tmp_path / "f", b"hello hearth")))["cid"] == str(cid)
    got = env.hearth_json("ipfs", "get", str(cid), "-o", str(tmp_path / "out"))
    assert got["bytes"] == 12 and (tmp_path / "out").read_bytes() == b"hello hearth"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path

