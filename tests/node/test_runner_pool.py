"""Runners are leased to jobs: loaded models are kept between jobs, only idle ones are evicted
(least recently used first), a closed runner fails its queued jobs instead of leaving them
hanging, and closing never frees a model under a running job. Stand-ins count loads and fake
llama.cpp; one test closes the real SmolLM2 while it decodes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from hearth.formats.jobspec import Params, make_spec
from hearth.models import bundled
from hearth_node.runner import PoolBusy, Runner, RunnerClosed, RunnerPool

MODEL = bundled()


class _Loaded:
    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size, self.closed = path, size, False

    def queued(self) -> int:
        return 0

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def _pool(budget: int, loads: list[_Loaded]) -> RunnerPool:
    def factory(p: Path) -> _Loaded:
        r = _Loaded(p, 100)
        loads.append(r)
        return r

    return RunnerPool(budget=budget, n_ctx=512, n_threads=1, n_gpu_layers=0, factory=factory)  # type: ignore[arg-type]


def test_lru_eviction_of_idle_runners_beyond_budget() -> None:
    loads: list[_Loaded] = []
    pool = _pool(250, loads)
    a, b, c = Path("a.gguf"), Path("b.gguf"), Path("c.gguf")
    ra = pool.acquire(a)
    pool.release(pool.acquire(b))
    pool.release(ra)
    assert pool.acquire(a) is ra and len(loads) == 2  # kept loaded, not reloaded
    pool.release(ra)
    pool.release(pool.acquire(c))  # 300 > 250: evict the least recently used, which is b
    assert [r.path for r in loads if r.closed] == [b]
    assert {x["path"] for x in pool.loaded()} == {"a.gguf", "c.gguf"}
    pool.close()
    assert all(r.closed for r in loads)


def test_leased_runner_is_never_evicted(tmp_path: Path) -> None:
    loads: list[_Loaded] = []
    pool = _pool(150, loads)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    b.write_bytes(b"x" * 100)  # its size is known before loading
    ra = pool.acquire(a)  # a job holds a
    with pytest.raises(PoolBusy):
        pool.acquire(b)  # b would need a's memory: not while a has work
    assert not ra.closed and len(loads) == 1
    pool.release(ra)
    rb = pool.acquire(b)  # now a is idle: evicted for b
    assert ra.closed and not rb.closed
    assert pool.loaded() == [{"path": str(b), "bytes": 100, "queued": 0, "leases": 1}]


class _FakeLlama:
    """llama_cpp.Llama stand-in: each completion waits for `go`; close is recorded."""

    go = threading.Event()
    events: list[str] = []

    def __init__(self, **kw: Any) -> None:
        pass

    def reset(self) -> None:
        pass

    def set_seed(self, seed: int) -> None:
        pass

    def create_completion(self, prompt: str, **kw: Any) -> dict[str, Any]:
        self.events.append(f"start {prompt}")
        assert self.go.wait(30)
        self.events.append(f"end {prompt}")
        return {"choices": [{"text": "ok", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    def close(self) -> None:
        self.events.append("freed")


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Runner:
    monkeypatch.setattr(llama_cpp, "Llama", _FakeLlama)
    _FakeLlama.go.clear()
    _FakeLlama.events = []
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    return Runner(path, n_ctx=512, n_threads=1, n_gpu_layers=0)


def _spec(prompt: str, max_tokens: int = 4) -> Any:
    return make_spec(MODEL.cid, MODEL.sha256, prompt=prompt, params=Params(max_tokens=max_tokens))


def test_close_waits_for_the_running_job_and_fails_the_queued(fake_runner: Runner) -> None:
    started = threading.Event()
    first = fake_runner.submit(_spec("one"), on_start=started.set)
    second = fake_runner.submit(_spec("two"))
    assert started.wait(10)
    closer = threading.Thread(target=fake_runner.close)
    closer.start()
    # the queued job fails at once; the running one keeps its model
    assert isinstance(second.exception(timeout=10), RunnerClosed)
    assert "freed" not in _FakeLlama.events and closer.is_alive()
    _FakeLlama.go.set()
    closer.join(10)
    assert first.result(timeout=10).output == "ok"
    assert _FakeLlama.events == ["start one", "end one", "freed"]  # freed only after the decode


def test_submit_after_close_fails_at_once(fake_runner: Runner) -> None:
    fake_runner.close()
    fut = fake_runner.submit(_spec("late"))
    assert isinstance(fut.exception(timeout=1), RunnerClosed)


def test_close_while_the_real_model_decodes() -> None:
    """SmolLM2 mid-generation: close returns once the job is done, and the job has its output."""
    runner = Runner(Path(MODEL.path), n_ctx=512, n_threads=None, n_gpu_layers=0)
    started = threading.Event()
    running = runner.submit(_spec("Once upon a time", max_tokens=48), on_start=started.set)
    queued = runner.submit(_spec("And then"))
    assert started.wait(30)
    runner.close()
    assert running.result(timeout=0).completion_tokens > 0
    assert isinstance(queued.exception(timeout=0), RunnerClosed)


def test_node_log_lines_survive_a_model_load(capfd: pytest.CaptureFixture[str]) -> None:
    """llama-cpp-python points fds 1 and 2 at /dev/null around a model load (verbose=False): a
    line another thread of the node logs meanwhile still reaches the node's stderr."""
    from hearth_node.cli import log_past_model_loads
    from llama_cpp._utils import suppress_stdout_stderr

    logger = logging.getLogger("hearth.test.model-load")
    logger.propagate = False
    with open(2, "w", closefd=False, buffering=1) as fd2:
        handler = logging.StreamHandler(fd2)  # as the CLI's: on fd 2
        logger.addHandler(handler)
        try:
            log_past_model_loads(logger)
            with suppress_stdout_stderr(disable=False):  # what Llama(..., verbose=False) does while loading
                logger.warning("reorg detected at block 22 (logged while a model loads)")
        finally:
            logger.removeHandler(handler)
            handler.stream.close()  # the copy of fd 2
    assert "reorg detected at block 22" in capfd.readouterr().err
