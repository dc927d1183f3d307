"""Assembles a provider node from its settings and runs it until stopped."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import uvicorn
from eth_account.signers.local import LocalAccount
from hearth import keys
from hearth.chain import deployments
from hearth.chain.market import Market, connect
from hearth.chain.sender import Sender
from hearth.dev import devnet
from hearth.dev.procs import free_port
from hearth.errors import ConfigError
from hearth.formats.cid import CID
from hearth.formats.units import TOKEN
from hearth.ipfs.kubo import KuboClient
from hearth.ipfs.pinning import RemotePins
from hearth.models import resolve

from hearth_node import guardian
from hearth_node.api import create_app
from hearth_node.audits import Audits, repro_class
from hearth_node.config import NodeSettings
from hearth_node.journal import Journal
from hearth_node.modelstore import ModelStore
from hearth_node.offers import OfferBook, max_open_jobs_in_window
from hearth_node.privacy import ensure_encryption_key
from hearth_node.processor import Processor
from hearth_node.remotepin import Publisher
from hearth_node.runner import RunnerPool, default_threads
from hearth_node.watcher import Watcher

GIL_SWITCH_SECONDS = 0.0005
# Off the devnet the first job due for payment waits ten more minutes past its one-hour window, so
# that a busy node pays the jobs of those minutes with one settleMany (gas table: 18,538 gas a job
# in a batch of ten against 57,466 for a settle); the devnet's tests and demo want payment at once.
PUBLIC_SETTLE_DELAY = 600.0

log = logging.getLogger("hearth.node")


def provider_account(s: NodeSettings) -> LocalAccount:
    """The node's key: a dev account on the devnet, else the keystore."""
    if s.keystore is not None:
        return keys.load_keystore(keys.require_keystore(s.keystore), keys.password(s.password_env))
    if s.network != "devnet":
        raise ConfigError("a keystore is needed outside the devnet", hint="set keystore in the config")
    return devnet.dev_account(s.dev_account)


class NodeService:
    """The running node, wired: one sender, the watcher feeding the processor, the journal, the API."""

    def __init__(self, s: NodeSettings) -> None:
        self.settings = s
        rpc = s.rpc_url or (devnet.rpc_url() if s.network == "devnet" else None)
        if rpc is None:
            raise ConfigError("rpc_url is not set", hint="pass --rpc-url or set HEARTH_RPC_URL")
        self.w3 = connect(rpc)
        d = deployments.load(s.network)
        if not deployments.is_live(self.w3, d):
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
        self.model_refs = refs
        self.model_cids = [CID.parse(m.cid) for m in refs]  # the served models' CIDs, parsed once here
        model_shas = {cid: (m.sha256, m.size) for cid, m in zip(self.model_cids, refs, strict=True)}
        policy = guardian.Policy(
            address=self.account.address,
            models={k: v[0] for k, v in model_shas.items()},
            min_price=s.min_price,
            max_tokens=s.max_tokens,
            max_spec_bytes=s.max_spec_bytes,
            n_ctx=s.n_ctx,
            tokens_per_second=s.tokens_per_second_floor,
            safety_factor=s.admission_safety_factor,
            margin_seconds=s.admission_margin_seconds,
            max_open_jobs=s.max_open_jobs,
            assigned_fetch_seconds=s.assigned_fetch_seconds,
        )
        ws = s.ws_url or rpc.replace("http://", "ws://").replace("https://", "wss://")
        # the account's one sender: every transaction goes through it, under the operator's fee ceiling
        self.sender = Sender(self.w3, self.account, max_fee_per_gas=s.max_fee_per_gas)
        self.processor = Processor(
            self.market, self.account, self.sender, self.ipfs, self.journal,
            ModelStore(s.data_dir / "models", self.ipfs),
            RunnerPool(s.model_memory_budget, s.n_ctx, s.n_threads, s.n_gpu_layers),
            policy, model_shas, d.chain_id,
        )
        on_devnet = s.network == "devnet"
        self.audits = Audits(self.processor, on_devnet, settle_delay=s.settle_delay if s.settle_delay is not None
                             else 0.0 if on_devnet else PUBLIC_SETTLE_DELAY)
        self.repro_class = repro_class(self.processor.engine, s.n_ctx, s.n_threads or default_threads(), s.n_gpu_layers)
        pins = RemotePins.from_config(
            s.pin_service_url, s.pin_service_token.get_secret_value() if s.pin_service_token else None, s.pin_gateway,
            s.pin_kubo_api, s.pin_kubo_token.get_secret_value() if s.pin_kubo_token else None, s.pin_origin)
        if pins is not None:
            self.processor.publisher = Publisher(pins, self.ipfs, self.journal, s.pin_wait_seconds,
                                                 s.admission_margin_seconds)
        self.watcher = Watcher(self.market, self.journal, self.processor.on_posted, s.confirmations, s.poll_interval,
                               s.log_range, ws, on_rpc_error=self.processor.metrics.count_rpc_error)
        # The chain counts a job open until it is settled, a window after it ran: the offers allow
        # that many more, so they do not go quiet after max_open_jobs answers. What the node
        # cannot start in time it declines (the client is refunded).
        in_window = max_open_jobs_in_window(s.max_open_jobs, self.market.dispute_window(), s.offer_window)
        self.offers = OfferBook(self.market, self.sender, self.ipfs, self.model_cids, self.repro_class, s.min_price,
                                s.offer_window, in_window, s.offer_ttl, self.journal) if s.offer_ttl else None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.api_port = s.api_port or free_port()

    def ensure_registered(self) -> None:
        """On the devnet, register with stake and models if needed; elsewhere, explain what to run."""
        acct = self.market.account(self.account.address)
        missing = [c for c in self.model_cids if not self.market.serves(self.account.address, c.to_bytes())]
        if acct.status == "Active":
            self._ensure_class(acct.open_jobs)
        if acct.status == "Active" and not missing:
            return
        if self.settings.network != "devnet":
            raise ConfigError(
                f"provider {self.account.address} is not registered for all its models on {self.settings.network}",
                hint="run: hearth provider register --stake AMOUNT --model NAME",
            )
        sender = self.sender
        if acct.status != "Active":
            need = self.settings.stake
            if acct.balance < need:
                sender.transact(self.market.token.functions.approve(self.market.address, need - acct.balance))
                sender.transact(self.market.fn("deposit", need - acct.balance))
            sender.transact(self.market.fn(
                "register", need, self.settings.min_price, self.repro_class, [c.to_bytes() for c in self.model_cids]
            ))
            log.info("registered provider %s with %d HRT stake", self.account.address, need // TOKEN)
        elif missing:
            sender.transact(self.market.fn("addModels", [c.to_bytes() for c in missing]))

    def _ensure_class(self, open_jobs: int) -> None:
        """Declare this node's reproducibility class if the chain has another one: audits compare
        outputs only within a class, so a stale class would have this node judged by (and judge)
        nodes whose outputs can differ from its own for honest reasons."""
        onchain = bytes(self.market.call(self.market.contract.functions.reproClassOf(self.account.address)))
        if onchain == self.repro_class:
            return
        if open_jobs:
            log.warning("reproducibility class changed, but %d jobs are open: it is set at the next start", open_jobs)
            return
        self.sender.transact(self.market.fn("setReproClass", self.repro_class))
        log.info("reproducibility class set to %s", self.repro_class.hex())

    def start(self) -> None:
        """Register if needed, start the pipeline and the API."""
        # The runner's thread takes the GIL back after every llama.cpp call; with claims, completes
        # and the API busy in other threads it waited up to the default 5 ms each time. At 0.5 ms
        # a node draining 50 queued jobs (as `hearth bench node` does) spent 25.5 s in inference
        # instead of 29.1, on 2 cores (plain llama-cpp-python: 23.9 to 24.9 s, same jobs).
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self.ensure_registered()
        self.processor.recover()  # open jobs first: their signed transactions hold the next nonces
        ensure_encryption_key(self.market, self.sender, self.account)  # private jobs are sealed to it
        if self.offers is not None:
            self.offers.start()  # clients post jobs under them: assigned, no claim race
        threading.Thread(target=self._preload, name="preload", daemon=True).start()
        self.watcher.start()
        self.audits.start()
        config = uvicorn.Config(
            create_app(self), host=self.settings.api_host, port=self.api_port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._server_thread.start()
        log.info("node %s up: API http://%s:%d", self.account.address, self.settings.api_host, self.api_port)

    def _preload(self) -> None:
        """Load (and so measure) each served model before jobs come: admission judges a burst
        of jobs by a speed measured on an idle node, not by the floor. Errors only log."""
        p = self.processor
        for cid, (sha, size) in p.model_shas.items():
            try:
                p.runners.release(p.runners.acquire(p.models.ensure(cid, sha, size)))
            except Exception as e:  # noqa: BLE001  (the first job loads it instead)
                log.warning("preloading model %s failed: %s", cid, str(e).splitlines()[0])

    def stop(self) -> None:
        """Stop everything started."""
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)
        if self.offers is not None:
            self.offers.stop()
        self.watcher.stop()
        self.audits.stop()
        self.processor.stop()
        self.processor.runners.close(timeout=10)  # a job still decoding keeps its model until it ends
        if self.processor.publisher is not None:
            self.processor.publisher.close()
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
