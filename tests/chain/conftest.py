"""A real anvil with Hearth deployed, per test module, and small helpers to drive it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from hearth.chain.deployments import Deployment
from hearth.chain.market import Market
from hearth.chain.sender import Sender
from hearth.dev.devnet import dev_account, ensure_deployed, start_anvil
from hearth.dev.procs import stop_proc
from web3 import Web3

MODEL = bytes.fromhex("1220") + keccak(b"chain-test-model")
SPEC = bytes.fromhex("1220") + keccak(b"chain-test-spec")


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """A raw call (anvil_*, evm_*); raises on a JSON-RPC error."""
    r = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in r, r
    return r.get("result")


@dataclass
class Chain:
    """anvil, a Web3 straight to it, and the deployment."""

    proc: subprocess.Popen[bytes]
    url: str
    w3: Web3
    deployment: Deployment

    def market(self, w3: Web3 | None = None) -> Market:
        """The market binding over `w3` (default: straight to anvil)."""
        return self.deployment.market_binding(w3 or self.w3)

    def post_job(self, sender: Sender, payment: int = 10**15) -> int:
        """Post one job from `sender` (whose account has deposited); returns its id."""
        m = self.market()
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        params = m.post_params(MODEL, SPEC, payment, now + 3600, 600)
        return m.job_posted_id(sender.transact(m.fn("postJob", params)))

    def client(self, index: int, deposit: int = 10**17) -> Sender:
        """A Sender for dev account `index` with `deposit` tokens in the market."""
        s = Sender(self.w3, dev_account(index))
        m = self.market()
        s.transact(m.token.functions.approve(m.address, deposit))
        s.transact(m.fn("deposit", deposit))
        return s


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A fresh automining anvil with Hearth deployed, for the whole module."""
    proc, url = start_anvil()
    try:
        w3 = Web3(Web3.HTTPProvider(url))
        path: Path = tmp_path_factory.mktemp("deploy") / "devnet.json"
        d, _ = ensure_deployed(w3, path=path)
        yield Chain(proc, url, w3, d)
    finally:
        stop_proc(proc)
