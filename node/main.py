"""Assembles a provider node from its settings and runs it until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import uvicorn
from eth_account.signers.local import LocalAccount

from client import deploy as deploy_mod
from client import devnet, keys
from client.chain import Market, connect
from client.cid import CID
from client.errors import ConfigError
from client.ipfs import KuboClient
from client.models import resolve
from client.procs import free_port
from node import guardian
from node.api import create_app
from node.config import NodeSettings
from node.journal import Journal
from node.processor import Processor
from node.runner import ModelStore, RunnerPool

log = logging.getLogger("hearth.node")
TOKEN = 10**18


def provider_account(s: NodeSettings) -> LocalAccount:
    """The node's key: a dev account on the devnet, else the keystore."""
    if s.keystore is not None:
        return keys.load_keystore(keys.require_keystore(s.keystore), keys.password(s.password_env))
    if s.network != "devnet":
        raise ConfigError("a keystore is needed outside the devnet", hint="set keystore in the config")
    return devnet.dev_account(s.dev_account)


class NodeService:
    """The running node: processor, journal, API server."""

    def __init__(self, s: NodeSettings) -> None:
        self.settings = s
        rpc = s.rpc_url or (devnet.rpc_url() if s.network == "devnet" else None)
        if rpc is None:
            raise ConfigError("rpc_url is not set", hint="pass --rpc-url or set HEARTH_RPC_URL")
        self.w3 = connect(rpc)
        d = deploy_mod.load(s.network)
        if not deploy_mod.is_live(self.w3, d):
            raise ConfigError(
                f"the contracts in deployments/{s.network}.json are not on the chain at {rpc}",
                hint="on the devnet run: hearth devnet up",
            )
        self.deployment = d
        self.market = Market(self.w3, d.market, d.token, d.deploy_block)
        self.account = provider_account(s)
        self.ipfs = KuboClient(s.ipfs_api)
        self.ipfs.version()  # fail now, with the URL, if IPFS is unreachable
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(s.data_dir / f"journal-{d.chain_id}-{d.market.lower()}-{self.account.address.lower()}.db")
        refs = [resolve(m) for m in s.models]
        model_shas = {CID.parse(m.cid).to_bytes(): (m.sha256, m.size) for m in refs}
        self.model_refs = refs
        policy = guardian.Policy(
            address=self.account.address,
            models={k: v[0] for k, v in model_shas.items()},
            min_price=s.min_price,
            max_tokens=s.max_tokens,
            max_spec_bytes=s.max_spec_bytes,
            n_ctx=s.n_ctx,
            tokens_per_second=s.tokens_per_second_floor,
        )
        ws = s.ws_url or rpc.replace("http://", "ws://").replace("https://", "wss://")
        self.processor = Processor(
            self.market, self.account, self.ipfs, self.journal,
            ModelStore(s.data_dir / "models", self.ipfs),
            RunnerPool(s.model_memory_budget, s.n_ctx, s.n_threads, s.n_gpu_layers),
            policy, model_shas, d.chain_id, s.confirmations, s.poll_interval, s.log_range, ws,
        )
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.api_port = s.api_port or free_port()

    def ensure_registered(self) -> None:
        """On the devnet, register with stake and models if needed; elsewhere, explain what to run."""
        acct = self.market.account(self.account.address)
        missing = [m for m in self.model_refs if not self.market.serves(self.account.address, CID.parse(m.cid).to_bytes())]
        if acct.status == "Active" and not missing:
            return
        if self.settings.network != "devnet":
            raise ConfigError(
                f"provider {self.account.address} is not registered for all its models on {self.settings.network}",
                hint="run: hearth provider register --stake AMOUNT --model NAME",
            )
        sender = self.processor.sender
        if acct.status != "Active":
            need = self.settings.stake
            if acct.balance < need:
                sender.transact(self.market.token.functions.approve(self.market.address, need - acct.balance))
                sender.transact(self.market.fn("deposit", need - acct.balance))
            sender.transact(self.market.fn(
                "register", need, self.settings.min_price, [CID.parse(m.cid).to_bytes() for m in self.model_refs]
            ))
            log.info("registered provider %s with %d HRT stake", self.account.address, need // TOKEN)
        elif missing:
            sender.transact(self.market.fn("addModels", [CID.parse(m.cid).to_bytes() for m in missing]))

    def start(self) -> None:
        """Register if needed, start the pipeline and the API."""
        self.ensure_registered()
        self.processor.start()
        config = uvicorn.Config(
            create_app(self), host=self.settings.api_host, port=self.api_port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._server_thread.start()
        log.info("node %s up: API http://%s:%d", self.account.address, self.settings.api_host, self.api_port)

    def stop(self) -> None:
        """Stop everything started."""
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)
        self.processor.stop()
        self.processor.runners.close()
        self.ipfs.close()
        self.journal.close()

    def run_forever(self) -> None:
        """Start and block until SIGINT/SIGTERM."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        print(f"hearth node {self.account.address} running; API http://{self.settings.api_host}:{self.api_port}",
              flush=True)
        done.wait()
        self.stop()

    # ------------------------------------------------------------------ views

    def status(self) -> dict[str, Any]:
        """What /status serves."""
        addr = self.account.address
        out: dict[str, Any] = {
            "address": addr, "chain_id": self.deployment.chain_id, "market": self.market.address,
            "rpc_ok": self.processor.rpc_ok, "models_loaded": self.processor.runners.loaded(),
            "models_served": [{"name": m.name, "cid": m.cid} for m in self.model_refs],
            "jobs": self.journal.counts(), "earnings_tokens": self.processor.metrics.earnings / TOKEN,
            "cursor_block": int(self.journal.get_kv("cursor") or -1),
        }
        try:
            a = self.market.account(addr)
            out.update(balance_tokens=a.balance / TOKEN, stake_tokens=a.stake / TOKEN, open_jobs=a.open_jobs,
                       provider_status=a.status, wallet_tokens=self.market.token_balance(addr) / TOKEN)
        except Exception as e:  # noqa: BLE001  (RPC down: still answer)
            out.update(balance_tokens=None, stake_tokens=None, open_jobs=None, chain_error=str(e))
        return out

    def job_view(self, job_id: int, timeline: bool) -> dict[str, Any]:
        """One job for /jobs and /jobs/{id}."""
        rec = self.journal.get(job_id)
        assert rec is not None
        view: dict[str, Any] = {
            "job_id": job_id, "step": rec.step, "reason": rec.reason,
            "payment_tokens": rec.posted["payment"] / TOKEN, "client": rec.posted["client"],
            "spec_cid": str(CID.parse(bytes.fromhex(rec.posted["spec_cid"]))),
        }
        data = {k: v for k, v in rec.data.items() if not k.endswith("_raw")}
        if "run" in data:
            view["result"] = {"output": data["run"]["output"], "finish_reason": data["run"]["finish_reason"],
                              "completion_tokens": data["run"]["completion_tokens"]}
        for k in ("claim_tx", "complete_tx", "result_cid", "claim_gas", "complete_gas"):
            if k in data:
                view[k] = data[k]
        if timeline:
            view["timeline"] = self.journal.timeline(job_id)
        return view

    def prometheus(self) -> str:
        """Metrics in Prometheus text format."""
        m = self.processor.metrics
        lines = ["# HELP hearth_jobs Jobs by journal step.", "# TYPE hearth_jobs gauge"]
        for step, n in sorted(self.journal.counts().items()):
            lines.append(f'hearth_jobs{{step="{step}"}} {n}')
        for name, kind, help_, value in (
            ("hearth_tokens_generated_total", "counter", "Completion tokens generated.", m.tokens_generated),
            ("hearth_tokens_per_second", "gauge", "Speed of the last job.", m.last_tokens_per_second),
            ("hearth_earnings_wei_total", "counter", "Payments earned this run, in token wei.", m.earnings),
            ("hearth_errors_total", "counter", "Job errors.", m.errors),
            ("hearth_rpc_errors_total", "counter", "RPC errors while watching.", m.rpc_errors),
            ("hearth_inference_seconds_total", "counter", "Time spent in inference.", m.inference_seconds),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"
