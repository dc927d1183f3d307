"""The deployed market the state-machine test (test_properties.py) runs on: funded actors, a
snapshot every example starts from, and one batched read of everything the model predicts."""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any, cast

from eth_abi import decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hearth.chain.types import PROVIDER_STATUS, STATES, Account
from hearth.formats.units import TOKEN
from web3 import Web3

from tests.backends import Backend
from tests.contracts.harness import CLASS_A, CLASS_B, MODEL_V0, MODEL_V1, Harness, artifact, make_harness
from tests.contracts.model import PARAMS, Model

MODELS = (MODEL_V0, MODEL_V1)
ACCOUNT_ABI = ["uint96", "uint96", "uint16", "uint40", "uint8"]


class World:
    """A deployed market with funded actors; every example starts from the same snapshot."""

    def __init__(self, b: Backend) -> None:
        a = b.accounts
        self.b = b
        self.h: Harness = make_harness(b, **asdict(PARAMS))
        # providers 0-2 of class A (they stay: a tiebreaker can be drawn), provider 3 of class B (it
        # moves), provider 4 of class B (it stays: alone in class B when provider 3 leaves, with no
        # able auditor while provider 3 unbonds or does not serve a job's model)
        self.owner, self.clients, self.providers, self.treasuries = a[0], a[1:3], [*a[3:6], a[6], a[9]], a[7:9]
        h = self.h
        h.op(self.owner, "setFee", 250, self.treasuries[0].address)
        m = Model(PARAMS, 250, self.treasuries[0].address)
        for acct in self.clients + self.providers:
            h.fund(acct, 1000, 200)
            m.wallet[acct.address], m.balance[acct.address] = 800 * TOKEN, 200 * TOKEN
            m.status[acct.address] = "None"
        starts = ((self.providers[0], MODELS, CLASS_A), (self.providers[1], MODELS, CLASS_A),
                  (self.providers[2], MODELS, CLASS_A), (self.providers[3], MODELS, CLASS_B),
                  (self.providers[4], MODELS, CLASS_B))
        for p, models, cls in starts:
            r = h.op(p, "register", 10 * TOKEN, 0, cls, list(models))
            m.join(p.address, cls, int(r["blockNumber"]))
            m.balance[p.address] -= 10 * TOKEN
            m.stake[p.address] += 10 * TOKEN
            m.status[p.address] = "Active"
            m.serves[p.address] = {keccak(x) for x in models}
            m.offer_nonce[p.address] += 1  # registering raises it
        for t in self.treasuries:
            h.s(t)  # tracked by the harness
        self.model0 = m
        self._calldata: dict[tuple[tuple[str, ...], ...], list[tuple[str, str]]] = {}
        arbiter = Web3.to_checksum_address(h.arbiter_address)
        self.arbiter = b.w3.eth.contract(address=arbiter, abi=artifact("SimpleArbiter")["abi"])
        self.snap = b.snapshot()

    def reset(self) -> Model:
        self.b.revert(self.snap)
        self.snap = self.b.snapshot()  # anvil's snapshots are single use
        for s in self.h.senders.values():
            s.resync()
        self.b.advance(1)  # mine a block: the next block's clock is what now() reads
        return copy.deepcopy(self.model0)

    def books(self, everyone: list[LocalAccount], wallets: list[LocalAccount], job: int | None,
              offerers: list[LocalAccount]) -> tuple[list[Account], list[int], int, int, str | None, list[int]]:
        """The market records of `everyone`, the token balances of `wallets`, the market's own
        token balance, the audit pool, the state of `job` and the offer nonces of `offerers`:
        raw eth_calls in one batched request to anvil."""
        market, token = self.h.market, self.h.market.token.functions
        c = market.contract.functions
        key = tuple(tuple(a.address for a in group) for group in (everyone, wallets, offerers))
        if key not in self._calldata:  # the same every step: ABI-encoding it each time was half a check's time
            calls = [(market.address, c.getAccount(a.address)) for a in everyone]
            calls += [(market.token.address, token.balanceOf(a.address)) for a in wallets]
            calls.append((market.token.address, token.balanceOf(market.address)))
            calls.append((market.address, c.auditPool()))
            calls += [(market.address, c.offerNonce(a.address)) for a in offerers]
            self._calldata[key] = [(to, fn._encode_transaction_data()) for to, fn in calls]
        data = list(self._calldata[key])
        if job is not None:
            data.append((market.address, c.getJob(job)._encode_transaction_data()))
        batch = [("eth_call", [{"to": to, "data": d}, "latest"]) for to, d in data]
        replies = cast(Any, self.b.w3.provider).make_batch_request(batch)
        raw = [bytes.fromhex(str(r["result"])[2:]) for r in replies]
        n, k, o = len(everyone), len(wallets), len(offerers)
        accounts = []
        for r in raw[:n]:
            balance, stake, open_jobs, unbonding_end, status = decode(ACCOUNT_ABI, r)
            accounts.append(Account(balance, stake, open_jobs, unbonding_end, PROVIDER_STATUS[status]))
        held = [int(decode(["uint256"], r)[0]) for r in raw[n:n + k]]
        nonces = [int(decode(["uint64"], r)[0]) for r in raw[n + k + 2:n + k + 2 + o]]
        state = STATES[decode(["uint8"], raw[n + k + 2 + o][:32])[0]] if job is not None else None
        pool = int(decode(["uint256"], raw[n + k + 1])[0])
        return accounts, held, int(decode(["uint256"], raw[n + k])[0]), pool, state, nonces
