"""`hearth bench node`: overhead per job, tokens/s and jobs/minute against plain llama-cpp-python.

Plain llama-cpp-python is the baseline a provider would otherwise run: the same model loaded once,
the node's thread and batch settings, context state reset before each job as the node's runner
does (so neither side skips prompt evaluation by reusing the last prompt), the same prompts and
max tokens. Node and plain runs of the long job alternate in pairs, the order flipping each pair,
so drift in the machine's load falls on both sides of a ratio."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hearth.chain.market import Market
    from hearth.chain.sender import Sender
    from hearth.dev.localnet import Localnet
    from hearth.formats.jobspec import JobSpec
    from hearth.ipfs.kubo import KuboClient

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]
STORY_TOKENS = 200
SHORT_TOKENS = 8
FINAL = ("completed", "failed", "skipped", "lost", "expired")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def color_prompt(i: int) -> list[dict[str, str]]:
    """The i-th short job of the throughput run (node and plain run the same list)."""
    return [{"role": "user", "content": f"Name a color ({i})."}]


def node_bench(n_jobs: int = 50, overhead_jobs: int = 10, pairs: int = 9,
               progress: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Overhead (post sent -> complete receipt, minus inference), tokens/s through the node vs
    plain llama-cpp-python in `pairs` alternating pairs, and jobs/minute for `n_jobs` queued short
    jobs vs the same jobs run back to back by plain llama-cpp-python; devnet automine, SmolLM2."""
    from hearth.dev.localnet import Localnet
    from hearth.models import bundled

    model = bundled()
    with tempfile.TemporaryDirectory(prefix="hearth-bench-node-") as home, Localnet(Path(home)) as net:
        b = _NodeSide(net, model.cid, model.sha256)
        b.run_job(b.spec([{"role": "user", "content": "Say hi."}], SHORT_TOKENS))  # warm-up: model load
        progress(f"overhead: {overhead_jobs} sequential jobs")
        overheads = [b.overhead(i) for i in range(overhead_jobs)]
        plain = PlainLlama(Path(model.path or ""))
        try:  # the plain model loaded once, idle (no CPU) while the node runs
            progress(f"tokens/s: {pairs} pairs of {STORY_TOKENS}-token runs, node and plain alternating")
            tps = _pairs(b, plain, pairs, progress)
            progress(f"throughput: {n_jobs} jobs posted, then drained by the node")
            node_jpm, node_s, posting_s = b.throughput(net, n_jobs)
            progress(f"throughput: the same {n_jobs} jobs back to back in plain llama-cpp-python")
            plain_jpm = plain.throughput(n_jobs)
        finally:
            plain.close()
            b.close()
    return {
        "overhead_ms_median": round(statistics.median(overheads) * 1000, 1),
        "overhead_ms_all": [round(o * 1000, 1) for o in overheads],
        **tps,
        "jobs_per_minute": round(node_jpm, 1),
        "jobs_per_minute_plain": round(plain_jpm, 1),
        "jobs_per_minute_ratio": round(node_jpm / plain_jpm, 3),
        # the node's drain of the queue; the posting before it (no node running then)
        "throughput_seconds": {"node": round(node_s, 2), "posting_before": round(posting_s, 2),
                               "plain": round(n_jobs / plain_jpm * 60, 2)},
        "queued_jobs": n_jobs,
        "threads": plain.threads,
    }


def _pairs(b: _NodeSide, plain: PlainLlama, pairs: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Node and plain runs of the story job in pairs, the first of each pair alternating."""
    story = b.spec(STORY, STORY_TOKENS)
    rows = []
    for i in range(pairs):
        got: dict[str, tuple[float, int]] = {}
        for side in (("node", "plain") if i % 2 == 0 else ("plain", "node")):
            got[side] = b.story_speed(story) if side == "node" else plain.speed(STORY, STORY_TOKENS)
        ratio = got["node"][0] / got["plain"][0]
        progress(f"pair {i + 1}: node {got['node'][0]:.1f} tokens/s, plain {got['plain'][0]:.1f}, ratio {ratio:.3f}")
        rows.append((got["node"], got["plain"], ratio))
    ratios = [r for _, _, r in rows]
    best_node, best_plain = max(n for n, _, _ in rows), max(p for _, p, _ in rows)
    return {
        # best of all pairs each, as before pairs were taken (kept comparable with older figures)
        "tokens_per_s_node": round(best_node[0], 1),
        "tokens_per_s_plain": round(best_plain[0], 1),
        "tokens_per_s_ratio": round(best_node[0] / best_plain[0], 3),
        "tokens_per_s_ratio_median": round(statistics.median(ratios), 3),
        "tokens_per_s_pair_ratios": [round(r, 3) for r in ratios],
        "tokens_per_s_pairs": [{"node": round(n[0], 1), "plain": round(p[0], 1)} for n, p, _ in rows],
        "completion_tokens": {"node": rows[-1][0][1], "plain": rows[-1][1][1]},
    }


class _NodeSide:
    """One node on the localnet and a funded client posting to it."""

    def __init__(self, net: Localnet, model_cid: str, model_sha256: str) -> None:
        from hearth.chain.sender import Sender
        from hearth.dev.devnet import dev_account
        from hearth.formats.units import TOKEN
        from hearth.ipfs.kubo import KuboClient

        self.node = net.start_node()
        self.market: Market = net.market
        self.acct = dev_account(2)
        self.sender: Sender = Sender(net.w3, self.acct)
        self.sender.transact(self.market.token.functions.approve(self.market.address, 2**255))
        self.sender.transact(self.market.fn("deposit", 1000 * TOKEN))
        self.ipfs: KuboClient = KuboClient(net.ipfs_api)
        self.model_cid, self.model_sha256 = model_cid, model_sha256

    def close(self) -> None:
        self.ipfs.close()

    def spec(self, messages: list[dict[str, str]], max_tokens: int) -> JobSpec:
        from hearth.formats.jobspec import Params, make_spec

        return make_spec(self.model_cid, self.model_sha256, messages=messages, params=Params(max_tokens=max_tokens))

    def post(self, spec: JobSpec, claim_timeout: int = 300) -> int:
        from hearth import jobs
        from hearth.formats.units import TOKEN

        return jobs.post(self.market, self.sender, self.acct, self.ipfs, spec, TOKEN // 100, claim_timeout, 600).job_id

    def run_job(self, spec: JobSpec, poll: float = 0.2) -> tuple[float, dict[str, Any]]:
        """Seconds from before the post to the node's `completed` step, and the node's job view."""
        t0 = time.time()
        job_id = self.post(spec)
        while True:
            view: dict[str, Any] = self.node.get(f"/jobs/{job_id}")
            if view.get("step") in FINAL:
                break
            time.sleep(poll)  # the node's own timeline times the job; polling only waits
        if view["step"] != "completed":
            raise RuntimeError(f"bench job {job_id} ended as {view['step']}")
        done_at = next(t["at"] for t in view["timeline"] if t["step"] == "completed")
        return done_at - t0, view

    def result(self, job_id: int) -> dict[str, Any]:
        from hearth import jobs

        return dict(jobs.fetch_result(self.market, self.ipfs, job_id).result.body)

    def overhead(self, i: int) -> float:
        total, view = self.run_job(self.spec([{"role": "user", "content": f"Say hi {i}."}], SHORT_TOKENS))
        return total - float(self.result(view["job_id"])["timings"]["inference_seconds"])

    def story_speed(self, story: JobSpec) -> tuple[float, int]:
        """Tokens/s of one long job as the node's runner timed it, and its token count."""
        _, view = self.run_job(story, poll=1.0)  # polling rarely: the bench itself steals no CPU
        body = self.result(view["job_id"])
        n = int(body["usage"]["completion_tokens"])
        return n / float(body["timings"]["inference_seconds"]), n

    def throughput(self, net: Localnet, n_jobs: int) -> tuple[float, float, float]:
        """Jobs/minute of the node draining a queue of `n_jobs` short jobs: the node is stopped,
        the jobs are posted, the node is started again. Timed from the start of its first
        inference (its model loaded and measured, as plain llama-cpp-python's is) to its last
        completion (result on IPFS, complete mined), by the node's own timeline and runner
        timings. With the seconds of the drain and of the posting. The client posts while no node
        runs: on this one machine its posting would take CPU that a client elsewhere would not."""
        from hearth.dev.procs import stop_proc

        stop_proc(self.node.proc)
        t0 = time.time()
        ids = [self.post(self.spec(color_prompt(i), SHORT_TOKENS), 600) for i in range(n_jobs)]
        posting = time.time() - t0
        self.node = net.start_node()
        views = []
        for j in ids:  # polled twice a second: the node's API shares its process with the jobs
            while (v := self.node.get(f"/jobs/{j}")).get("step") not in FINAL:
                time.sleep(0.5)
            views.append(v)
        if bad := [v["job_id"] for v in views if v["step"] != "completed"]:
            raise RuntimeError(f"bench jobs {bad} did not complete")
        at = [{t["step"]: t["at"] for t in v["timeline"]} for v in views]
        ran = [float(self.result(j)["timings"]["inference_seconds"]) for j in ids]
        first = min(a["ran"] - seconds for a, seconds in zip(at, ran, strict=True))
        elapsed = max(a["completed"] for a in at) - first
        return n_jobs / elapsed * 60, elapsed, posting


class PlainLlama:
    """The model in plain llama-cpp-python with the node's settings, loaded once."""

    def __init__(self, path: Path) -> None:
        import llama_cpp

        from hearth_node.runner import N_BATCH, N_UBATCH, default_threads

        # the node's own thread settings: the ratios measure what the node adds, not a thread count
        self.threads = default_threads()
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=self.threads,
                                   n_threads_batch=self.threads, n_batch=N_BATCH, n_ubatch=N_UBATCH, verbose=False,
                                   seed=0)
        self.run([{"role": "user", "content": "Hi."}], SHORT_TOKENS)  # the context's first call sets it up: untimed

    def run(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[int, float]:
        """One job as the node's runner runs it (fresh context state, seed 0, temperature 0): its
        completion tokens and the seconds of the call, timed as the runner times it."""
        self.llm.reset()
        self.llm.set_seed(0)
        t0 = time.perf_counter()
        out: Any = self.llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.0, top_p=1.0,  # type: ignore[arg-type]
                                                   seed=0)
        return int(out["usage"]["completion_tokens"]), time.perf_counter() - t0

    def speed(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[float, int]:
        """Tokens/s of one run and its tokens."""
        n, seconds = self.run(messages, max_tokens)
        return n / seconds, n

    def throughput(self, n_jobs: int) -> float:
        """Jobs/minute of the throughput run's jobs, back to back."""
        t0 = time.perf_counter()
        for i in range(n_jobs):
            self.run(color_prompt(i), SHORT_TOKENS)
        return n_jobs / (time.perf_counter() - t0) * 60

    def close(self) -> None:
        self.llm.close()
