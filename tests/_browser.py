"""Headless Chromium for the tests that render HTML (the sweep report, the docs site)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def chromium() -> str | None:
    """The first Chromium-like browser on PATH, or None (the caller skips)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def dump_dom(
    exe: str,
    url: str,
    profile: Path,
    *,
    budget_ms: int,
    timeout: float,
    file_access: bool = False,
) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time, in a fresh ``profile``.

    The flags keep Chromium off the network (no background or component requests, which this
    machine's closed network refuses) and out of any existing profile.
    """
    r = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *(["--allow-file-access-from-files"] if file_access else []),
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout
