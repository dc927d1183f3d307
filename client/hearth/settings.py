"""Where Hearth's files live and the one reader of the environment (HEARTH_* variables).

In a checkout, state goes to `<repo>/.hearth` and deployments to `<repo>/deployments`; from an
installed wheel, to `~/.hearth` and `~/.hearth/deployments`. The compiled contract artifacts are
package data (`hearth/artifacts/`), so an installed wheel finds them too."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import ToolchainError

PACKAGE_DIR = Path(__file__).resolve().parent
ARTIFACTS_DIR = PACKAGE_DIR / "artifacts"
REPO_ROOT = PACKAGE_DIR.parent.parent
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").exists() and (REPO_ROOT / "contracts").is_dir()
CONTRACTS_DIR = REPO_ROOT / "contracts"
NODE_MODULES = REPO_ROOT / "node_modules"

DEFAULT_IPFS_API = "http://127.0.0.1:5001"
DEFAULT_IPFS_PORT = 5001
DEFAULT_RPC_PORT = 8545  # anvil's default
PASSWORD_ENV = "HEARTH_PASSWORD"  # noqa: S105  (the variable's name, not a password)


def env(name: str) -> str | None:
    """A HEARTH_* environment variable, or None when unset or empty."""
    return os.environ.get(name) or None


def data_dir() -> Path:
    """Hearth's state directory (keystores, devnet chain, IPFS blocks, node journal)."""
    default = REPO_ROOT / ".hearth" if IN_CHECKOUT else Path.home() / ".hearth"
    return Path(env("HEARTH_HOME") or default).resolve()


def deployments_dir() -> Path:
    """Where `deployments/<network>.json` files are read and written."""
    explicit = env("HEARTH_DEPLOYMENTS_DIR")
    if explicit:
        return Path(explicit)
    return REPO_ROOT / "deployments" if IN_CHECKOUT else data_dir() / "deployments"


def password_from_env(var: str = PASSWORD_ENV) -> str | None:
    """The keystore password from the environment, if set."""
    return os.environ.get(var)


def crash_point_name() -> str | None:
    """Fault injection for the crash-safety tests (HEARTH_TEST_CRASH_AT)."""
    return env("HEARTH_TEST_CRASH_AT")


def wrong_output() -> bool:
    """Fault injection for the audit tests (HEARTH_TEST_WRONG_OUTPUT=1): the node delivers a
    corrupted output on its own jobs (its audits of others stay honest)."""
    return env("HEARTH_TEST_WRONG_OUTPUT") == "1"


def npm_binary(package: str, name: str) -> Path:
    """The real binary of a Foundry npm package (not the node wrapper, which leaves zombies)."""
    path = NODE_MODULES / "@foundry-rs" / f"{package}-linux-amd64" / "bin" / name
    if not path.exists():
        raise ToolchainError(f"{name} not found at {path}", hint="run scripts/setup (it runs npm ci)")
    return path


@dataclass(frozen=True)
class PinSettings:
    """Remote pinning for a client or node (hearth.ipfs.pinning), from HEARTH_PIN_* variables:
    a pinning service (IPFS Pinning Service API endpoint and its bearer token), the gateway its
    pins are read back from (default: the service's own URL, as with `hearth ipfs daemon
    --serve-pins`), a second Kubo RPC API to copy to (and its token), and the origin the service
    fetches from (a gateway URL or an HTTP multiaddr where this machine's IPFS can be reached)."""

    service_url: str | None = None
    service_token: str | None = None
    gateway: str | None = None
    kubo_api: str | None = None
    kubo_token: str | None = None
    origin: str | None = None


def pin_settings(**flags: str | None) -> PinSettings:
    """PinSettings from HEARTH_PIN_SERVICE_URL, _SERVICE_TOKEN, _GATEWAY, _KUBO_API, _KUBO_TOKEN and
    _ORIGIN, each overridden by a flag given (not None)."""
    names = ("service_url", "service_token", "gateway", "kubo_api", "kubo_token", "origin")
    return PinSettings(**{n: flags.get(n) or env(f"HEARTH_PIN_{n.upper()}") for n in names})


def pin_service_tokens() -> frozenset[str]:
    """Tokens `hearth ipfs daemon --serve-pins` accepts (HEARTH_IPFS_PIN_TOKENS, comma-separated)."""
    return frozenset(t.strip() for t in (env("HEARTH_IPFS_PIN_TOKENS") or "").split(",") if t.strip())


def api_key() -> str | None:
    """The key `hearth serve` requires from its clients (HEARTH_API_KEY); None accepts any key."""
    return env("HEARTH_API_KEY")


def ollama_models_dir() -> Path:
    """Ollama's model store: OLLAMA_MODELS (Ollama's own variable) or ~/.ollama/models."""
    explicit = os.environ.get("OLLAMA_MODELS") or None
    return Path(explicit).expanduser() if explicit else Path.home() / ".ollama" / "models"
