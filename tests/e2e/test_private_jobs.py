"""Issue 13's acceptance: a job submitted with the CLI's defaults is private. It is answered,
yet neither its prompt (a unique word) nor its answer is in any block of the IPFS daemon's
store, in any transaction's input or in any log on the chain; another account cannot read it,
and the client's `job result` and `job verify` decrypt it."""

from __future__ import annotations

import secrets
from pathlib import Path

from hearth.dev.localnet import Localnet
from hearth.ipfs.kubo import KuboClient

CLIENT, PROVIDER, STRANGER = 2, 1, 4


def ipfs_blocks(env: Localnet) -> list[bytes]:
    """Every block the embedded daemon stores (<data>/blocks/<2 hex>/<sha256 hex>)."""
    return [p.read_bytes() for p in sorted((env.home / "ipfs" / "blocks").glob("*/*")) if p.is_file()]


def chain_bytes(env: Localnet) -> list[bytes]:
    """Every transaction input, log topic and log data on the chain."""
    w3 = env.w3
    out: list[bytes] = []
    for n in range(int(w3.eth.block_number) + 1):
        for tx in w3.eth.get_block(n, full_transactions=True)["transactions"]:
            out.append(bytes(tx["input"]))  # type: ignore[index]
    for lg in w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"}):
        out.append(bytes(lg["data"]))
        out.extend(bytes(t) for t in lg["topics"])
    return out


def leaks(needle: str, haystacks: list[bytes]) -> int:
    """How many of `haystacks` hold `needle` (UTF-8, or hex-encoded as in a calldata dump)."""
    raw = needle.encode()
    return sum(1 for h in haystacks if raw in h or raw.hex().encode() in h)


def test_default_job_is_private_end_to_end(env: Localnet, tmp_path: Path) -> None:
    env.start_node(PROVIDER)
    word = "zq" + secrets.token_hex(5)  # in no model vocabulary, no block, no transaction by chance
    out = env.hearth_json("job", "submit", "--prompt", f"Write one sentence about the word {word}.",
                          "--max-tokens", "24", account=CLIENT)
    job_id, answer = out["job_id"], out["output"].strip()
    assert out["private"] is True and out["verified"] is True
    assert len(answer) >= 8, f"the answer is too short to search for meaningfully: {answer!r}"

    # the scan does see plaintext where there is some: a canary added in the clear is found
    canary = "canary" + secrets.token_hex(6)
    with KuboClient(env.ipfs_api) as ipfs:
        ipfs.add(f"a public note: {canary}".encode(), pin=True)
    blocks, chain = ipfs_blocks(env), chain_bytes(env)
    assert leaks(canary, blocks) == 1 and len(chain) > 10
    for what, text in (("prompt word", word), ("answer", answer)):
        assert leaks(text, blocks) == 0, f"the {what} is in an IPFS block"
        assert leaks(text, chain) == 0, f"the {what} is in a transaction or a log"

    # the client reads it back, and re-runs it locally; another account gets a clear error
    again = env.hearth_json("job", "result", str(job_id), account=CLIENT)
    assert again["output"] == out["output"] and again["private"] is True
    verify = env.hearth_json("job", "verify", str(job_id), account=CLIENT)
    assert verify["match"] is True, verify
    r = env.hearth("job", "result", str(job_id), account=STRANGER)
    assert r.returncode != 0
    assert "is private and its key is not sealed or shared to" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and word not in r.stdout + r.stderr

    # the client hands the key to the stranger (as it would to the arbiter): now it can read it
    stranger = env.hearth_json("account", "encryption-key", account=STRANGER)["address"]
    env.hearth_json("job", "share", str(job_id), "--to", stranger, account=CLIENT)
    shared = env.hearth_json("job", "result", str(job_id), account=STRANGER)
    assert shared["output"] == out["output"]

    # --public keeps today's plaintext job
    pub = env.hearth_json("job", "submit", "--public", "--prompt", f"Say {word}.", "--max-tokens", "8",
                          account=CLIENT)
    assert pub["private"] is False
    assert leaks(word, ipfs_blocks(env)) >= 1
    assert env.hearth_json("job", "result", str(pub["job_id"]), account=STRANGER)["output"] == pub["output"]
