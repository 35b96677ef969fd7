"""The zero-configuration database: started on first use, data kept for the next start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from services.auth import Principal
from services.config import settings_from
from services.runtime import connect_store
store = connect_store(settings_from({"CHAT_DATA_DIR": sys.argv[2]}))
p = Principal("user_restart")
if sys.argv[3] == "write":
    store.create_conversation(p, "survives a restart")
print("|".join(c.title for c in store.list_conversations(p).items))
store.close()
"""


def run(data_dir: Path, mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT), str(data_dir), mode],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_first_start_creates_the_database_and_the_next_start_reuses_it() -> None:
    base = Path(tempfile.mkdtemp(prefix="chatemb-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        data_dir = base / "data"
        assert run(data_dir, "write") == "survives a restart"
        # The first process stopped the server on exit; this one starts it again on the same files.
        assert (data_dir / "pg" / "PG_VERSION").exists()
        assert not (data_dir / "pg" / "postmaster.pid").exists(), "the server should stop with its last user"
        assert run(data_dir, "read") == "survives a restart"
    finally:
        shutil.rmtree(base, ignore_errors=True)
