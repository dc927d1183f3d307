"""Node settings: one pydantic-settings tree from a TOML file, HEARTH_* env vars and flags
(flags win over env, env over the file). Only this module reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hearth.settings import DEFAULT_IPFS_API, data_dir
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class NodeSettings(BaseSettings):
    """Everything a provider node needs to know."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="forbid")

    network: str = Field("devnet", description="deployment to use: deployments/<network>.json")
    rpc_url: str | None = Field(None, description="HTTP RPC endpoint; default: the running devnet's")
    ws_url: str | None = Field(
        None, description="WebSocket endpoint for new-block pushes; default: the RPC URL as ws:// (anvil serves both)"
    )
    ipfs_api: str = Field(DEFAULT_IPFS_API, description="Kubo RPC API (or the embedded daemon)")
    keystore: Path | None = Field(None, description="encrypted keystore file of the provider key (not on devnet)")
    password_env: str = Field("HEARTH_PASSWORD", description="env var holding the keystore password")
    dev_account: int = Field(1, ge=0, le=9, description="devnet only: which dev account is the provider")
    models: list[str] = Field(default_factory=lambda: ["smollm2-135m"], description="model names or CIDs served")
    min_price: int = Field(10**15, ge=0, description="least payment accepted, in token wei")
    stake: int = Field(100 * 10**18, gt=0, description="devnet only: stake to register with when unregistered")
    max_tokens: int = Field(1024, ge=1, le=32768, description="largest max_tokens accepted")
    max_spec_bytes: int = Field(65536, ge=256, description="largest job spec fetched")
    n_ctx: int = Field(2048, ge=128, description="llama.cpp context size")
    n_threads: int | None = Field(None, ge=1, description="llama.cpp threads; default: all cores but one")
    n_gpu_layers: int = Field(0, ge=-1, description="layers to offload to a GPU (needs a CUDA build); -1 = all")
    model_memory_budget: int = Field(4 * 2**30, ge=2**20, description="bytes of loaded models before LRU eviction")
    confirmations: int = Field(0, ge=0, le=64, description="blocks a JobPosted needs above it before acting")
    max_fee_per_gas: int | None = Field(
        None, ge=1, description="ceiling on the fee per gas (wei) of the node's transactions; none: no ceiling")
    settle_delay: float | None = Field(
        None, ge=0, le=86400, description="seconds the first job due for payment waits past its window, so that "
        "the jobs due by then are paid together by one settleMany (less gas per job); default: 0 on the devnet, "
        "600 elsewhere")
    poll_interval: float = Field(0.05, gt=0, le=30, description="seconds between get_logs polls")
    log_range: int = Field(2000, ge=1, description="most blocks per get_logs call")
    tokens_per_second_floor: float = Field(
        20.0, gt=0, description="generation speed assumed until the node has measured its own (warm-up, jobs)"
    )
    max_open_jobs: int = Field(8, ge=1, le=256, description="most jobs claimed and not yet finished at once")
    offer_ttl: int = Field(1800, ge=0, le=30 * 86400, description="seconds each published offer holds (republished "
                           "halfway, withdrawn at stop); 0: publish none, so jobs come only by claiming open ones")
    offer_window: int = Field(300, ge=1, description="completion window, in seconds, the offers ask of a job")
    assigned_fetch_seconds: float = Field(
        60.0, gt=0, le=86400, description="seconds the node keeps trying to fetch the spec of a job an offer assigned "
        "to it before it declines the job (a client posting specs nobody can fetch holds the node's open-job slots no "
        "longer); open jobs are tried until their claim deadline")
    admission_safety_factor: float = Field(
        2.0, ge=1.0, le=20.0, description="estimated seconds of queued work plus a job are multiplied by this"
    )
    admission_margin_seconds: float = Field(
        3.0, ge=0, le=3600, description="seconds kept free before a deadline (claim and complete transactions)"
    )
    pin_service_url: str | None = Field(
        None, description="IPFS Pinning Service API endpoint that keeps specs and results when this node is offline")
    pin_service_token: SecretStr | None = Field(None, description="bearer token of the pinning service")
    pin_gateway: str | None = Field(
        None, description="gateway serving what the pinning service holds; default: the service's own URL")
    pin_kubo_api: str | None = Field(
        None, description="a second Kubo RPC API that specs and results are copied to and pinned on")
    pin_kubo_token: SecretStr | None = Field(None, description="bearer token of that Kubo RPC API, if it wants one")
    pin_origin: str | None = Field(None, description="where the pinning service can fetch from this node's IPFS: a "
                                   "gateway URL or /dns4/HOST/tcp/PORT/http; none: it looks on the IPFS network")
    pin_wait_seconds: float = Field(
        30.0, ge=0, le=600, description="how long delivery waits for the result's remote pin before completing on "
                                        "chain (never past the completion deadline less the admission margin)")
    data_dir: Path = Field(default_factory=lambda: data_dir() / "node", description="journal, model cache")
    api_host: str = Field("127.0.0.1", description="HTTP API bind address (localhost by default)")
    api_port: int = Field(8700, ge=0, le=65535, description="HTTP API port (0: pick a free one)")

    @model_validator(mode="after")
    def _check(self) -> NodeSettings:
        if self.network != "devnet" and self.keystore is None:
            raise ValueError("keystore must be set when the network is not devnet")
        if not self.models:
            raise ValueError("models must name at least one model")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> NodeSettings:
    """Settings from `config_file` (TOML), HEARTH_* env vars and `overrides` (flags)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return NodeSettings(**given)
    config = SettingsConfigDict(env_prefix="HEARTH_", extra="forbid", toml_file=config_file)
    cls = type("FileNodeSettings", (NodeSettings,), {"model_config": config})
    return cls(**given)  # type: ignore[no-any-return]


def commented_config() -> str:
    """A TOML config with every field, its default and its description (for `hearth node init`)."""
    lines = ["# Hearth provider node configuration. Every field can also be set as HEARTH_<NAME>.", ""]
    for name, f in NodeSettings.model_fields.items():
        lines.append(f"# {f.description}")
        default = f.get_default(call_default_factory=True)
        if default is None:
            lines.append(f"# {name} = ")
        elif isinstance(default, bool):
            lines.append(f"{name} = {'true' if default else 'false'}")
        elif isinstance(default, int | float):
            lines.append(f"{name} = {default}")
        elif isinstance(default, list):
            lines.append(f"{name} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in default)}]")
        else:
            lines.append(f'{name} = "{default}"')
        lines.append("")
    return "\n".join(lines)
