"""Encryption keys for private jobs: publish and rotate (versioned), and key shares that are
only an event; on eth-tester and anvil."""

from __future__ import annotations

import pytest

from tests.backends import Backend
from tests.contracts.harness import Harness, make_harness

KEY1, KEY2 = b"\x01" * 32, b"\x02" * 32


@pytest.fixture
def h(backend: Backend) -> Harness:
    return make_harness(backend)


def test_encryptionKey_none_reads_zero(h: Harness) -> None:
    assert h.market.encryption_key(h.b.accounts[3].address) == (b"\x00" * 32, 0)


def test_setEncryptionKey_versions_each_key(h: Harness) -> None:
    acct = h.b.accounts[3]  # any account may publish: it need not be a provider
    r1 = h.op(acct, "setEncryptionKey", KEY1)
    assert h.market.encryption_key(acct.address) == (KEY1, 1)
    r2 = h.op(acct, "setEncryptionKey", KEY2)
    assert h.market.encryption_key(acct.address) == (KEY2, 2)
    events = [h.market.contract.events.EncryptionKeySet().process_receipt(r)[0]["args"] for r in (r1, r2)]
    assert [(e["account"], e["version"], bytes(e["key"])) for e in events] == [
        (acct.address, 1, KEY1), (acct.address, 2, KEY2)]
    assert h.market.encryption_key(h.b.accounts[4].address) == (b"\x00" * 32, 0)  # per account


def test_setEncryptionKey_zero_key_reverts(h: Harness) -> None:
    acct = h.b.accounts[3]
    h.expect_revert("InvalidEncryptionKey", acct, "setEncryptionKey", b"\x00" * 32)
    assert h.market.encryption_key(acct.address) == (b"\x00" * 32, 0)


def test_shareJobKey_emits_only_an_event(h: Harness) -> None:
    sender, to = h.b.accounts[3], h.b.accounts[4]
    sealed = b"\x00\x00\x00\x01" + b"\xab" * 80
    r = h.op(sender, "shareJobKey", 7, to.address, sealed)  # no job 7: the market checks nothing
    (ev,) = h.market.contract.events.JobKeyShared().process_receipt(r)
    assert (ev["args"]["jobId"], ev["args"]["from"], ev["args"]["to"], bytes(ev["args"]["sealedKey"])) == (
        7, sender.address, to.address, sealed)
    (found,) = h.market.logs("JobKeyShared", h.market.deploy_block, "latest", jobId=7, to=to.address)
    assert bytes(found["args"]["sealedKey"]) == sealed
    assert h.market.job(7).state == "None"
