"""Shared fixtures: chain backends (eth-tester and anvil), snapshots per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HEARTH_HOME"] = tempfile.mkdtemp(prefix="hearth-test-")

from hearth.dev.localnet import Localnet  # noqa: E402

from tests.backends import AnvilBackend, Backend, EthTesterBackend  # noqa: E402


@pytest.fixture(scope="session", params=["eth-tester", "anvil"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each contract test runs on both backends."""
    b: Backend = EthTesterBackend() if request.param == "eth-tester" else AnvilBackend()
    yield b
    b.close()


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilBackend]:
    """A real anvil for tests that need one (gas, node)."""
    b = AnvilBackend()
    yield b
    b.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Localnet]:
    """A fresh one-machine market (anvil, contracts, IPFS daemon); nodes are started by the test."""
    with Localnet(tmp_path / "home") as net:
        yield net
