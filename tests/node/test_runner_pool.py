"""Loaded models are kept between jobs and evicted least-recently-used beyond the budget.
(Real runners load real models in test_node.py; here stand-ins with a size count loads.)"""

from __future__ import annotations

from pathlib import Path

from hearth_node.runner import RunnerPool


class _Loaded:
    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size, self.closed = path, size, False

    def queued(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def test_lru_eviction_beyond_budget() -> None:
    loads: list[_Loaded] = []

    def factory(p: Path) -> _Loaded:
        r = _Loaded(p, 100)
        loads.append(r)
        return r

    pool = RunnerPool(budget=250, n_ctx=512, n_threads=1, n_gpu_layers=0, factory=factory)  # type: ignore[arg-type]
    a, b, c = Path("a.gguf"), Path("b.gguf"), Path("c.gguf")
    ra = pool.get(a)
    pool.get(b)
    assert pool.get(a) is ra and len(loads) == 2  # kept loaded, not reloaded
    pool.get(c)  # 300 > 250: evict the least recently used, which is b
    assert [r.path for r in loads if r.closed] == [b]
    assert {x["path"] for x in pool.loaded()} == {"a.gguf", "c.gguf"}
    pool.close()
    assert all(r.closed for r in loads)
