"""What every command shares: the lazily connected context, output helpers and options.

Only click is imported up front: `hearth --help` must not pay for web3 (see `hearth bench startup`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hearth.errors import UserError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from eth_typing import ChecksumAddress
    from web3 import Web3

    from hearth.chain.market import Market
    from hearth.chain.sender import Sender
    from hearth.ipfs.fetch import BlockSource
    from hearth.ipfs.kubo import KuboClient
    from hearth.ipfs.pinning import RemotePins

CLIENT_DEV_ACCOUNT = 2  # dev account 0 deploys, 1 is the default provider, 2 the default client
PROVIDER_DEV_ACCOUNT = 1


def emit(obj: Any, as_json: bool, human: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, default=str))
    elif human is not None:
        click.echo(human)


def fail(msg: str, hint: str | None = None, code: int = 1) -> NoReturn:
    click.echo(f"error: {msg}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)
    sys.exit(code)


def progress_printer() -> Callable[[int, int], None]:
    """Progress on stderr (stdout stays clean for scripts)."""

    def show(done: int, total: int) -> None:
        pct = f" {100 * done / total:5.1f}%" if total else ""
        click.echo(f"\r{done / 1e6:9.1f} MB{pct}", nl=False, err=True)
        if total and done >= total:
            click.echo("", err=True)

    return show


@dataclass
class Ctx:
    """Lazily built connections shared by a command."""

    network: str
    rpc_url: str | None
    ipfs_api: str
    keystore: Path | None
    account_index: int | None
    _w3: Web3 | None = None
    _market: Market | None = None
    _acct: LocalAccount | None = None
    _sender: Sender | None = None
    _ipfs: KuboClient | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    pin_flags: dict[str, str | None] = field(default_factory=dict)
    _pins: RemotePins | None | bool = False  # False: not built yet

    @property
    def w3(self) -> Web3:
        from hearth.chain.market import connect
        from hearth.dev import devnet

        if self._w3 is None:
            url = self.rpc_url or (devnet.rpc_url() if self.network == "devnet" else None)
            if url is None:
                raise UserError("no RPC URL", hint="pass --rpc-url URL (or set HEARTH_RPC_URL)")
            self._w3 = connect(url)
        return self._w3

    @property
    def market(self) -> Market:
        from hearth.chain import deployments

        if self._market is None:
            d = deployments.load(self.network)
            if not deployments.is_live(self.w3, d):
                raise UserError(
                    f"the {self.network} contracts are not on this chain",
                    hint="run: hearth devnet up" if self.network == "devnet" else "check --rpc-url and --network",
                )
            self._market = d.market_binding(self.w3)
        return self._market

    @property
    def account(self) -> LocalAccount:
        from hearth import keys
        from hearth.dev import devnet

        if self._acct is None:
            if self.keystore is not None:
                self._acct = keys.load_keystore(keys.require_keystore(self.keystore), keys.password())
            elif self.network == "devnet":
                self._acct = devnet.dev_account(CLIENT_DEV_ACCOUNT if self.account_index is None else self.account_index)
            else:
                raise UserError("no account", hint="pass --keystore FILE (create one: hearth account new)")
        return self._acct

    @property
    def sender(self) -> Sender:
        from hearth.chain.sender import Sender

        if self._sender is None:
            self._sender = Sender(self.w3, self.account)
        return self._sender

    @property
    def ipfs(self) -> KuboClient:
        from hearth.ipfs.kubo import KuboClient

        if self._ipfs is None:
            self._ipfs = KuboClient(self.ipfs_api)
        return self._ipfs

    @property
    def pins(self) -> RemotePins | None:
        """The remote pins configured (flags, then HEARTH_PIN_* variables), or None."""
        from hearth.ipfs.pinning import RemotePins
        from hearth.settings import pin_settings

        if self._pins is False:
            p = pin_settings(**self.pin_flags)
            self._pins = RemotePins.from_config(p.service_url, p.service_token, p.gateway, p.kubo_api, p.kubo_token,
                                                p.origin)
        return self._pins if isinstance(self._pins, RemotePins) else None

    @property
    def fallbacks(self) -> list[BlockSource]:
        """Where content is read from when the local IPFS lacks it: the remote pins."""
        return self.pins.readers() if self.pins is not None else []


pass_ctx = click.make_pass_decorator(Ctx)
json_opt = click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON")
JOB_ID = click.IntRange(0, 2**256 - 1)  # a job id argument: the market's uint256


def checksum_address(text: str) -> ChecksumAddress:
    """`text` as a checksummed address; UserError when it is not one."""
    from web3 import Web3

    if not Web3.is_address(text):
        raise UserError(f"not an address: {text}", hint="an address is 0x and 40 hex digits")
    return Web3.to_checksum_address(text)


def tx_hash(receipt: Any) -> str:
    """0x-hex hash of a receipt's transaction."""
    return "0x" + bytes(receipt["transactionHash"]).hex()
