"""llama.cpp execution: one runner per loaded model (a Llama context is not thread-safe)
and LRU eviction of loaded models beyond a memory budget."""

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

log = logging.getLogger(__name__)

# Fixed batch sizes: llama.cpp's results depend on batch shape, so they never vary by job.
N_BATCH = 512
N_UBATCH = 512


@dataclass(frozen=True)
class RunResult:
    """What one inference produced."""

    output: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Generation speed."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


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


class Runner:
    """One Llama context and the thread that owns it; jobs are queued to it."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None, n_gpu_layers: int) -> None:
        import llama_cpp

        self.path = path
        self.size = path.stat().st_size
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1,
            n_batch=N_BATCH, n_ubatch=N_UBATCH, n_gpu_layers=n_gpu_layers, verbose=False, seed=0,
        )
        self._q: queue.Queue[tuple[JobSpec, Future[RunResult]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"runner-{path.name}", daemon=True)
        self._thread.start()

    def count_tokens(self, spec: JobSpec) -> int:
        """Prompt tokens of a spec (chat messages counted with a per-message allowance)."""
        text = spec.input_text.encode()
        extra = 8 * len(spec.messages or ())
        return len(self.llm.tokenize(text, add_bos=True)) + extra

    def submit(self, spec: JobSpec) -> Future[RunResult]:
        """Queue a job; the future resolves when it has run."""
        fut: Future[RunResult] = Future()
        self._q.put((spec, fut))
        return fut

    def queued(self) -> int:
        """Jobs waiting."""
        return self._q.qsize()

    def close(self) -> None:
        """Stop the thread and free the model."""
        self._q.put(None)
        self._thread.join(timeout=60)
        self.llm.close()

    def _loop(self) -> None:
        while (item := self._q.get()) is not None:
            spec, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self.run(spec))
            except Exception as e:  # the job fails, the runner lives on
                fut.set_exception(e)

    def run(self, spec: JobSpec) -> RunResult:
        """Run one spec deterministically: fresh context state, fixed batches, no prompt cache."""
        p = spec.params
        self.llm.reset()
        self.llm.set_seed(p.seed)
        t0 = time.perf_counter()
        common: dict[str, Any] = dict(
            max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed,
            stop=list(p.stop) or None,
        )
        if spec.prompt is not None:
            out: Any = self.llm.create_completion(spec.prompt, **common)
            text = out["choices"][0]["text"]
        else:
            msgs = [{"role": r, "content": c} for r, c in spec.messages or ()]
            out = self.llm.create_chat_completion(msgs, **common)  # type: ignore[arg-type]
            text = out["choices"][0]["message"]["content"] or ""
        seconds = time.perf_counter() - t0
        usage = out["usage"]
        return RunResult(
            text, str(out["choices"][0]["finish_reason"]), int(usage["prompt_tokens"]),
            int(usage["completion_tokens"]), seconds,
        )


class RunnerPool:
    """Loaded models by path, least recently used evicted beyond the memory budget."""

    def __init__(
        self, budget: int, n_ctx: int, n_threads: int | None, n_gpu_layers: int,
        factory: Callable[[Path], Runner] | None = None,
    ) -> None:
        self.budget = budget
        self._factory = factory or (lambda p: Runner(p, n_ctx, n_threads, n_gpu_layers))
        self._runners: OrderedDict[Path, Runner] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> Runner:
        """The runner of a model, loading it (and evicting others) if needed."""
        with self._lock:
            if path in self._runners:
                self._runners.move_to_end(path)
                return self._runners[path]
            runner = self._factory(path)
            self._runners[path] = runner
            while sum(r.size for r in self._runners.values()) > self.budget and len(self._runners) > 1:
                old_path, old = self._runners.popitem(last=False)
                log.info("evicting model %s (memory budget %d bytes)", old_path.name, self.budget)
                old.close()
            return runner

    def loaded(self) -> list[dict[str, Any]]:
        """What is loaded, for /status."""
        with self._lock:
            return [{"path": str(p), "bytes": r.size, "queued": r.queued()} for p, r in self._runners.items()]

    def close(self) -> None:
        """Free every model."""
        with self._lock:
            for r in self._runners.values():
                r.close()
            self._runners.clear()
