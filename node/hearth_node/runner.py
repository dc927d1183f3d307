"""llama.cpp execution: one runner per loaded model (a Llama context is not thread-safe), its
measured speed, and a pool that leases runners to jobs and evicts only idle ones beyond a memory
budget.

A runner's thread owns its Llama: it frees the model itself when it stops, after the job it is
decoding, so closing a runner never frees a model under a running job. Jobs still queued when a
runner closes fail with RunnerClosed instead of waiting forever."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.formats.jobspec import JobSpec

log = logging.getLogger("hearth.node")

# Fixed batch sizes: llama.cpp's results depend on batch shape, so they never vary by job.
N_BATCH = 512
N_UBATCH = 512
# Added to exact prompt counts: a template may render the date (strftime_now), which can change
# length between the count and the run.
COUNT_MARGIN = 4
WARMUP_PROMPT = "The quick brown fox jumps over the lazy dog. " * 4
WARMUP_TOKENS = 16


@dataclass(frozen=True)
class RunResult:
    """What one inference produced."""

    output: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    prompt_seconds: float = 0.0  # of `seconds`, llama.cpp's own prompt-evaluation time

    @property
    def tokens_per_second(self) -> float:
        """Generation speed."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class RunnerClosed(Exception):
    """The runner closed before this job ran; the job itself is fine and may run elsewhere."""


class Unrunnable(Exception):
    """The spec cannot run on this model (its chat template refuses the messages)."""


class PoolBusy(Exception):
    """The model cannot be loaded now: every loaded model has work and the budget is spent."""


class Speed:
    """Measured seconds per prompt token and per generated token, exponentially weighted. A
    slower sample moves the average more than a faster one: over-estimating costs a job,
    under-estimating costs collateral."""

    SLOWER, FASTER = 0.5, 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.prompt: float | None = None
        self.gen: float | None = None
        self.best: tuple[float, float] | None = None  # fastest (gen, prompt) ever measured

    def _mix(self, old: float | None, sample: float) -> float:
        if old is None:
            return sample
        a = self.SLOWER if sample > old else self.FASTER
        return (1 - a) * old + a * sample

    def update(self, prompt_tokens: int, prompt_seconds: float, completion_tokens: int, seconds: float) -> None:
        """Fold in one run. Generation gets the wall time left after prompt evaluation, so the
        Python-side sampling and per-job overheads count as well as llama.cpp's decode."""
        with self._lock:
            if prompt_tokens >= 8 and prompt_seconds > 0:
                self.prompt = self._mix(self.prompt, prompt_seconds / prompt_tokens)
            if completion_tokens >= 4:
                self.gen = self._mix(self.gen, max(seconds - prompt_seconds, 0.0) / completion_tokens)
            if self.gen is not None:
                gen, prompt = self.best or (self.gen, self.prompt or self.gen)
                self.best = (min(gen, self.gen), min(prompt, self.prompt or prompt))

    def snapshot(self) -> tuple[float | None, float | None]:
        """(seconds per generated token, seconds per prompt token); None until measured."""
        with self._lock:
            return self.gen, self.prompt

    def fastest(self) -> tuple[float | None, float | None]:
        """The best (seconds per generated token, per prompt token) seen; None until measured."""
        with self._lock:
            return self.best or (None, None)


def default_threads() -> int:
    """All cores but one. llama.cpp's threads meet at a barrier after every operation, so when
    one is descheduled the others wait: with every core taken, any other work on the machine
    (the node's own claims and API included) slows decoding many times over."""
    return max(1, (os.cpu_count() or 2) - 1)


def engine_info() -> dict[str, str]:
    """Engine name and build, recorded in every result."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return {
        "name": "llama.cpp",
        "llama_cpp_python": str(llama_cpp.__version__),
        "system": info.decode(errors="replace").strip() if isinstance(info, bytes) else str(info),
        "gpu_offload": str(bool(llama_cpp.llama_supports_gpu_offload())),
    }


class _Tokenized(Exception):
    def __init__(self, n: int) -> None:
        self.n = n


class _TokenProbe:
    """Stands in for the Llama inside a chat handler: the handler renders its template and
    tokenizes the prompt exactly as create_chat_completion does, and is stopped right there."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        raise _Tokenized(len(self._llm.tokenize(text, add_bos=add_bos, special=special)))


class Runner:
    """One Llama context and the thread that owns it; jobs are queued to it."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None, n_gpu_layers: int, warmup: bool = False) -> None:
        import llama_cpp

        self.path = path
        self.size = path.stat().st_size
        t0 = time.perf_counter()
        threads = n_threads or default_threads()
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,  # batch: all cores else
            n_batch=N_BATCH, n_ubatch=N_UBATCH, n_gpu_layers=n_gpu_layers, verbose=False, seed=0,
        )
        self.load_seconds = time.perf_counter() - t0
        self.speed = Speed()
        self._warmup = warmup
        self._lock = threading.Lock()
        self._closed = False
        # (spec, its future, on_start); a None spec asks for a measurement run
        self._q: queue.Queue[tuple[JobSpec | None, Future[RunResult], Callable[[], None] | None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"runner-{path.name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ counting

    def count_tokens(self, spec: JobSpec) -> int:
        """Prompt tokens of a spec as the run will evaluate them (chat template, special and BOS
        tokens included), plus COUNT_MARGIN. Safe beside a running job: it only tokenizes."""
        if spec.prompt is not None:
            return self._completion_tokens(spec.prompt) + COUNT_MARGIN
        from llama_cpp import llama_chat_format

        llm = self.llm
        msgs = [{"role": r, "content": c} for r, c in spec.messages or ()]
        try:
            # The handler create_chat_completion picks, in its order.
            handler = (
                llm.chat_handler or llm._chat_handlers.get(str(llm.chat_format))
                or llama_chat_format.get_chat_completion_handler(str(llm.chat_format))
            )
            handler(llama=_TokenProbe(llm), messages=msgs)  # type: ignore[arg-type]
        except _Tokenized as t:
            return t.n + COUNT_MARGIN
        except AttributeError as e:  # a handler that is not template-based wants more of the Llama
            log.debug("chat handler could not be probed (%s); counting generously", e)
        except Exception as e:  # the template itself refused (raise_exception, bad roles): so would the run
            raise Unrunnable(f"the model's chat template refuses these messages: {e}") from None
        # Generous fallback: all text, the template itself (it may hold a default system prompt),
        # and room for each message's role markers.
        template = str(llm.metadata.get("tokenizer.chat_template", ""))
        return (len(llm.tokenize(spec.input_text.encode(), add_bos=True, special=True))
                + len(llm.tokenize(template.encode(), add_bos=False)) + 16 * len(msgs) + COUNT_MARGIN)

    def _completion_tokens(self, prompt: str) -> int:
        """Tokens create_completion evaluates for a text prompt (see Llama._create_completion)."""
        llm = self.llm
        model = llm._model
        cls, sep = model.token_cls(), model.token_sep()
        bos = cls if cls != -1 else llm.token_bos()
        n_bos = 1 if model.add_bos_token() and bos != -1 else 0
        n_eos = 0 if not model.add_eos_token() and sep == -1 else 1
        body = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) if prompt else []
        return n_bos + len(body) + n_eos

    # ------------------------------------------------------------------ jobs

    def submit(self, spec: JobSpec, on_start: Callable[[], None] | None = None) -> Future[RunResult]:
        """Queue a job; the future resolves when it has run, or fails with RunnerClosed.
        `on_start` is called on the runner's thread as the job starts."""
        fut: Future[RunResult] = Future()
        with self._lock:
            if self._closed:
                fut.set_exception(RunnerClosed(f"runner of {self.path.name} is closed"))
            else:
                self._q.put((spec, fut, on_start))
        return fut

    def measure(self) -> None:
        """Queue a short measurement run (an idle node re-measures a speed that may be stale)."""
        with self._lock:
            if not self._closed:
                self._q.put((None, Future(), None))

    def queued(self) -> int:
        """Jobs waiting."""
        return self._q.qsize()

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs, fail the queued ones, and let the thread free the model once its
        current job is done. Waits up to `timeout` seconds (None: until then)."""
        pending: list[Future[RunResult]] = []
        with self._lock:
            if not self._closed:
                self._closed = True
                while True:
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        pending.append(item[1])
                self._q.put(None)
        for fut in pending:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(RunnerClosed(f"runner of {self.path.name} closed before the job ran"))
        if threading.current_thread() is self._thread:
            return  # the thread itself, on its way out
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("model %s is still running a job; it is freed when that job ends", self.path.name)

    def _loop(self) -> None:
        try:
            if self._warmup:
                self._measure(first=True)
            while (item := self._q.get()) is not None:
                spec, fut, on_start = item
                if not fut.set_running_or_notify_cancel():
                    continue
                if spec is None:
                    self._measure()
                    continue
                try:
                    if on_start is not None:
                        on_start()
                    r = self.run(spec)
                    self.speed.update(r.prompt_tokens, r.prompt_seconds, r.completion_tokens, r.seconds)
                    fut.set_result(r)
                except Exception as e:  # the job fails, the runner lives on
                    fut.set_exception(e)
        finally:
            self.close(timeout=0)  # if this thread dies, queued jobs fail instead of hanging
            self.llm.close()  # on this thread, so never under a decode

    def _measure(self, first: bool = False) -> None:
        """One short fixed run, so admission has a measured speed (before the first job, and
        again when asked); the very first call of a context also sets it up, so is not timed."""
        try:
            if first:
                self.llm.create_completion("Hello", max_tokens=2, temperature=0.0, seed=0)
            out, seconds, prompt_seconds = self._timed(
                lambda: self.llm.create_completion(WARMUP_PROMPT, max_tokens=WARMUP_TOKENS, temperature=0.0, seed=0)
            )
            usage = out["usage"]
            self.speed.update(int(usage["prompt_tokens"]), prompt_seconds, int(usage["completion_tokens"]), seconds)
            log.info("model %s: %.1f tokens/s measured", self.path.name, 1 / self.speed.gen if self.speed.gen else 0.0)
        except Exception as e:  # noqa: BLE001  (no measurement: admission uses the floor speed)
            log.warning("measuring %s failed: %s", self.path.name, e)

    def _timed(self, call: Callable[[], Any]) -> tuple[Any, float, float]:
        """Run `call`; its result, wall seconds, and llama.cpp's prompt-evaluation seconds."""
        import llama_cpp

        def p_eval_ms() -> float:
            try:
                return float(llama_cpp.llama_perf_context(self.llm.ctx).t_p_eval_ms)
            except Exception:  # noqa: BLE001  (no perf counters: generation absorbs the prompt time)
                return 0.0

        before = p_eval_ms()
        t0 = time.perf_counter()
        out = call()
        seconds = time.perf_counter() - t0
        return out, seconds, min(max(p_eval_ms() - before, 0.0) / 1000, seconds)

    def run(self, spec: JobSpec) -> RunResult:
        """Run one spec deterministically: fresh context state, fixed batches, no prompt cache."""
        p = spec.params
        self.llm.reset()
        self.llm.set_seed(p.seed)
        common: dict[str, Any] = dict(
            max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed,
            stop=list(p.stop) or None,
        )
        if spec.prompt is not None:
            prompt = spec.prompt
            out, seconds, prompt_seconds = self._timed(lambda: self.llm.create_completion(prompt, **common))
            text = out["choices"][0]["text"]
        else:
            msgs = [{"role": r, "content": c} for r, c in spec.messages or ()]
            out, seconds, prompt_seconds = self._timed(
                lambda: self.llm.create_chat_completion(msgs, **common)  # type: ignore[arg-type]
            )
            text = out["choices"][0]["message"]["content"] or ""
        usage = out["usage"]
        return RunResult(
            text, str(out["choices"][0]["finish_reason"]), int(usage["prompt_tokens"]),
            int(usage["completion_tokens"]), seconds, prompt_seconds,
        )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class RunnerPool:
    """Loaded models by path. A job holds a lease on its runner from before its claim until its
    run is over; only runners without leases are evicted (least recently used first)."""

    def __init__(
        self, budget: int, n_ctx: int, n_threads: int | None, n_gpu_layers: int,
        factory: Callable[[Path], Runner] | None = None,
    ) -> None:
        self.budget = budget
        self._factory = factory or (lambda p: Runner(p, n_ctx, n_threads, n_gpu_layers, warmup=True))
        self._runners: OrderedDict[Path, Runner] = OrderedDict()
        self._leases: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self, path: Path) -> Runner:
        """A lease on the runner of a model, loading it (and evicting idle ones) if needed.
        PoolBusy when it does not fit beside the runners that have work."""
        with self._lock:
            if self._closed:
                raise RunnerClosed("the runner pool is closed")
            runner = self._runners.get(path)
            if runner is None:
                self._make_room(_file_size(path), keep=None)
                runner = self._factory(path)
                self._runners[path] = runner
                self._make_room(0, keep=path)
            self._runners.move_to_end(path)
            self._leases[path] = self._leases.get(path, 0) + 1
            return runner

    def release(self, runner: Runner) -> None:
        """End one lease; an idle runner over the budget is evicted now."""
        with self._lock:
            n = self._leases.get(runner.path, 0) - 1
            if n > 0:
                self._leases[runner.path] = n
            else:
                self._leases.pop(runner.path, None)
            if not self._closed:
                self._make_room(0, keep=None)

    def _make_room(self, extra: int, keep: Path | None) -> None:
        """Evict idle runners, least recently used first, until `extra` more bytes fit."""
        while sum(r.size for r in self._runners.values()) + extra > self.budget:
            idle = [p for p in self._runners if p != keep and not self._leases.get(p)]
            if not idle:
                if extra and self._runners:
                    raise PoolBusy(f"memory budget of {self.budget} bytes is held by models with work")
                return  # a lone model over the budget still runs, as before leases
            old = self._runners.pop(idle[0])
            log.info("evicting model %s (memory budget %d bytes)", old.path.name, self.budget)
            old.close()

    def peek(self, path: Path) -> Runner | None:
        """The runner of a loaded model, without a lease (to ask it to measure itself)."""
        with self._lock:
            return self._runners.get(path)

    def loaded(self) -> list[dict[str, Any]]:
        """What is loaded, for /status."""
        with self._lock:
            return [{"path": str(p), "bytes": r.size, "queued": r.queued(), "leases": self._leases.get(p, 0)}
                    for p, r in self._runners.items()]

    def close(self, timeout: float | None = None) -> None:
        """Stop every runner: queued jobs fail with RunnerClosed, running ones finish first
        (waiting up to `timeout` seconds for each)."""
        with self._lock:
            self._closed = True
            runners = list(self._runners.values())
            self._runners.clear()
        for r in runners:
            r.close(timeout)
