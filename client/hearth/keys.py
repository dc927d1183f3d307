"""Keys: the dev accounts on the devnet, otherwise encrypted keystores (eth-account). A key is
never logged, printed or served."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from hearth.errors import UserError
from hearth.settings import PASSWORD_ENV, data_dir, password_from_env


def keystore_dir() -> Path:
    """Where `hearth account new|import` writes keystores."""
    d = data_dir() / "keystore"
    # 0700: other local users must not even list which accounts this user holds; chmod too,
    # because mkdir's mode is masked by the umask and an older directory may be wider
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if d.stat().st_mode & 0o077:
        d.chmod(0o700)
    return d


def password(env_var: str = PASSWORD_ENV, confirm: bool = False) -> str:
    """The keystore password from `env_var`, else a prompt (never echoed)."""
    pw = password_from_env(env_var)
    if pw is not None:
        return pw
    if not os.isatty(0):
        raise UserError(f"no keystore password: set {env_var} or run in a terminal to be asked")
    pw = getpass.getpass("keystore password: ")
    if confirm and getpass.getpass("again: ") != pw:
        raise UserError("the passwords differ")
    return pw


def save_keystore(acct: LocalAccount, pw: str) -> Path:
    """Encrypt `acct` into the keystore directory; returns the file."""
    path = keystore_dir() / f"{acct.address.lower()[2:]}.json"
    data = json.dumps(Account.encrypt(acct.key, pw)).encode()
    # Created 0600 by the call that creates it (no window where it is world-readable, as with
    # write-then-chmod), and O_EXCL: never write through a planted symlink or over a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"keystore {path} already exists; not overwritten",
                        hint="this account is already imported; delete the file first to replace it") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # the umask can only narrow the mode; make it exact anyway
            f.write(data)
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written keystore left behind
        raise
    return path


def require_keystore(path: Path) -> Path:
    """`path` if it exists, else a UserError saying how to make one (asked before any password)."""
    if not path.exists():
        raise UserError(f"keystore {path} not found", hint="create one: hearth account new (or import)")
    if not path.is_file():
        raise UserError(f"keystore {path} is a directory, not a keystore file",
                        hint="pass the keystore file itself (hearth account list shows them)")
    return path


def load_keystore(path: Path, pw: str) -> LocalAccount:
    """Decrypt a keystore file; UserError on a missing file, one that is not a keystore, or a wrong password."""
    require_keystore(path)
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise UserError(f"cannot read keystore {path}: {e.strerror}") from None
    except ValueError:  # not JSON, or not UTF-8 text at all: not a password problem
        raise UserError(f"{path} is not a keystore file (not JSON)",
                        hint="pass a keystore written by hearth account new or import") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a keystore file", hint="pass a keystore written by hearth account new or import")
    try:
        key = Account.decrypt(data, pw)
    except (KeyError, TypeError) as e:
        raise UserError(f"{path} is not a keystore file") from e
    except ValueError as e:
        raise UserError(f"cannot decrypt {path}: wrong password?") from e
    acct: LocalAccount = Account.from_key(key)
    return acct


def list_keystores() -> list[tuple[str, Path]]:
    """(address, file) of each keystore in the keystore directory."""
    out = []
    for p in sorted(keystore_dir().glob("*.json")):
        try:
            out.append(("0x" + json.loads(p.read_text())["address"], p))
        except (json.JSONDecodeError, KeyError):
            continue
    return out
