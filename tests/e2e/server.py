"""`streamlit run app.py` as a user starts it, for browser and HTTP tests: a fresh data directory, a free
port on 127.0.0.1, the server's output kept in a log file the test can read, and a clean stop (the embedded
PostgreSQL included, even if it outlives Streamlit)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class AppServer:
    url: str
    data_dir: Path
    log_path: Path
    # Set by app_server: SIGKILL the streamlit process and start it again on the same port and data
    # directory (the embedded PostgreSQL outlives it, as after a real crash). Returns when it is healthy.
    crash_and_restart: Callable[[], None] = lambda: None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def app_server(env: Mapping[str, str], *, setup: Callable[[Path], None] | None = None) -> Iterator[AppServer]:
    """Run the app with `env` on top of a clean environment (no DATABASE_/OPENAI_/ANTHROPIC_/CHAT_ variables
    leak in from the caller). `setup(data_dir)` runs before start, e.g. to create accounts."""
    base = Path(tempfile.mkdtemp(prefix="chate2e-", dir="/tmp"))  # short: the db socket lives inside
    os.chmod(base, 0o755)
    data_dir = base / "data"
    data_dir.mkdir()
    if setup is not None:
        setup(data_dir)
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "OPENAI_", "ANTHROPIC_", "CHAT_"))}
    log_path = base / "streamlit.log"
    log = log_path.open("w")

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", "app.py",
                "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                "--browser.gatherUsageStats", "false",
            ],
            cwd=ROOT, env={**clean, "CHAT_DATA_DIR": str(data_dir), **env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    proc = launch()
    server = AppServer(url=f"http://127.0.0.1:{port}", data_dir=data_dir, log_path=log_path)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited: {server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def crash_and_restart() -> None:
        nonlocal proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
        proc = launch()
        wait_until(healthy, 60, "streamlit to start again")

    server.crash_and_restart = crash_and_restart
    try:
        wait_until(healthy, 60, "streamlit to start")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        pidfile = data_dir / "pg" / "postmaster.pid"
        if pidfile.exists():  # the database outlived streamlit: stop it by its own pid
            lines = pidfile.read_text().splitlines()
            if lines and lines[0].strip().isdigit():
                try:
                    os.kill(int(lines[0]), 15)
                except ProcessLookupError:
                    pass
        shutil.rmtree(base, ignore_errors=True)
