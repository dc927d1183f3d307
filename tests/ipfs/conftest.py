"""An embedded IPFS daemon as a real separate process on a free port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hearth.dev.procs import free_port, port_open, stop_proc, wait_until


@dataclass
class Daemon:
    """A running daemon and how to restart it on the same data."""

    data: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_proc(self.proc)

    def start(self) -> None:
        self.proc = start_daemon(self.data, self.port)


def start_daemon(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "hearth.ipfs.daemon", "--data", str(data), "--port", str(port)])
    wait_until(lambda: port_open(port), 30, "ipfs daemon", proc)
    return proc


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    d = Daemon(tmp_path / "ipfs", port, start_daemon(tmp_path / "ipfs", port))
    yield d
    d.stop()
