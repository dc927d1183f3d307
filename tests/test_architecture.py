"""The layout holds: two import packages, no import circles, small files, a light CLI start-up,
and a wheel that works outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 450


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("hearth", "hearth_node", exclude_type_checking_imports=True)
    # a package's __init__ importing its own submodules is not a circle between modules
    assert len(graph.modules) > 40
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = grimp.build_graph("hearth", exclude_type_checking_imports=True)
    graph.add_import(importer="hearth.formats.cid", imported="hearth.jobs")
    assert any("hearth.formats.cid" in c and "hearth.jobs" in c for c in _cycles(graph))


def test_no_source_file_over_450_lines() -> None:
    files = [p for d in ("client", "node") for p in (REPO / d).rglob("*.py")]
    assert len(files) > 40
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_distribution_claims_only_hearth_and_hearth_node() -> None:
    from setuptools import find_packages

    tops = {p.split(".")[0] for where in ("client", "node") for p in find_packages(where=str(REPO / where))}
    assert tops == {"hearth", "hearth_node"}


def test_cli_start_up_imports_no_sdk_internals() -> None:
    """`hearth --version` must not pay for web3, httpx or the node (see `hearth bench startup`)."""
    code = ("import sys; sys.argv = ['hearth', '--version']\n"
            "from hearth.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('web3', 'httpx', 'eth_account', 'llama_cpp',"
            " 'fastapi', 'hearth_node') and m != 'hearth_node.cli' and m != 'hearth_node')\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_runs(tmp_path: Path) -> None:
    """`pip wheel .`, installed into a fresh venv whose dependencies come from ours but which
    cannot see the checkout: `hearth --help`, `hearth job --help` and the packaged artifacts work."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("hearth-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    site = next((env_dir / "lib").glob("python3.*/site-packages"))
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "web3").exists())
    # only a path line: the checkout's editable-install hook in our site-packages is not executed
    (site / "deps.pth").write_text(str(ours) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    py = env_dir / "bin" / "python"
    where = subprocess.run([str(py), "-c", "import hearth, hearth_node; print(hearth.__file__, hearth_node.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(REPO) not in where and str(site) in where
    for args in (["--help"], ["job", "--help"], ["node", "--help"]):
        r = subprocess.run([str(py), "-m", "hearth", *args], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "Usage: " in r.stdout
    r = subprocess.run([str(py), "-c", "from hearth.chain import artifacts; print(len(artifacts.load('JobMarket')['abi']))"],
                       cwd=tmp_path, capture_output=True, text=True, check=True)
    assert int(r.stdout) > 10
