"""A real headless browser for tests: Debian's chromium (scripts/setup installs it where it can)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# --disable-dev-shm-usage: containers give /dev/shm 64 MiB, too little for a page's renderer
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def chromium_or_skip() -> str:
    """The chromium binary, or skip the test saying how to get one."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (scripts/setup installs it as root: apt-get install chromium)")
    return path


def dump_dom(browser: str, url: str, profile: Path, budget_ms: int = 5000) -> str:
    """The DOM after the page's scripts ran (virtual time), as chromium serializes it."""
    profile.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                        "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def screenshot(browser: str, url: str, png: Path, profile: Path, budget_ms: int = 5000,
               size: tuple[int, int] = (1280, 900)) -> Path:
    """A PNG of the page after its scripts ran (virtual time), at a desktop window size."""
    profile.mkdir(parents=True, exist_ok=True)
    png.parent.mkdir(parents=True, exist_ok=True)
    # subprocess.run kills chromium if it overruns, so no browser outlives the test
    r = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                        "--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--screenshot={png}", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and png.exists(), (r.returncode, r.stderr[-2000:])
    return png
