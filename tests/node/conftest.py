"""A real anvil with Hearth deployed, per module, for watcher tests that need no node process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hearth.dev.devnet import ensure_deployed, start_anvil
from hearth.dev.procs import stop_proc
from web3 import Web3

from tests.chain.conftest import Chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A fresh automining anvil with Hearth deployed, for the whole module."""
    proc, url = start_anvil()
    try:
        w3 = Web3(Web3.HTTPProvider(url))
        d, _ = ensure_deployed(w3, path=tmp_path_factory.mktemp("deploy") / "devnet.json")
        yield Chain(proc, url, w3, d)
    finally:
        stop_proc(proc)
