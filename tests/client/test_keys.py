"""Keystores are private from the first byte: the file is created 0600 (never world-readable,
not even for a moment, whatever the umask) in a 0700 directory, and never overwritten."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from hearth import keys
from hearth.errors import UserError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The most permissive umask: any mode bit the code asks for ends up on the file."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_keystore_created_0600_in_0700_dir(home: Path) -> None:
    acct = Account.create()
    path = keys.save_keystore(acct, "pw")
    assert path.parent == keys.keystore_dir() and home in path.parents
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert keys.load_keystore(path, "pw").address == acct.address


def test_umask_zero_still_private(home: Path, umask_zero: None) -> None:
    path = keys.save_keystore(Account.create(), "pw")
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


def test_wide_keystore_dir_is_narrowed(home: Path, umask_zero: None) -> None:
    d = keys.keystore_dir()
    d.chmod(0o755)  # e.g. made by an older version
    assert _mode(keys.keystore_dir()) == 0o700


def test_existing_keystore_not_overwritten(home: Path) -> None:
    acct = Account.create()
    path = keys.save_keystore(acct, "pw")
    before = path.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        keys.save_keystore(acct, "other")
    assert path.read_bytes() == before


def test_symlink_at_keystore_path_not_followed(home: Path, tmp_path: Path) -> None:
    acct = Account.create()
    target = tmp_path / "elsewhere"
    (keys.keystore_dir() / f"{acct.address.lower()[2:]}.json").symlink_to(target)
    with pytest.raises(UserError):
        keys.save_keystore(acct, "pw")
    assert not target.exists()
