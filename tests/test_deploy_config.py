"""The deployment files say what docs/deploy.md promises: nginx forwards the websocket and does not buffer
the streaming routes (and every location keeps the Host header Streamlit checks), the systemd units run the
app and the backup, the dev container runs the README's commands, dependabot watches pip and npm, and
every link in the guide leads somewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "docs" / "deploy"


def locations(conf: str) -> dict[str, str]:
    """Each nginx `location <match> { ... }` body by its match (the file has no nested blocks in them)."""
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r"location\s+([^{]+)\{([^}]*)\}", conf)}


def test_nginx_forwards_the_websocket_and_streams_server_sent_events_unbuffered() -> None:
    conf = (DEPLOY / "nginx-chat.conf").read_text()
    blocks = locations(conf)
    ws = blocks["/_stcore/stream"]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws and "proxy_set_header Connection $connection_upgrade;" in ws
    [sse] = [body for match, body in blocks.items() if "api/chat" in match]
    assert "v1/chat/completions" in next(m for m in blocks if "api/chat" in m)
    assert "proxy_buffering off;" in sse
    assert "listen 443 ssl" in conf and "return 301 https://" in conf
    # nginx: a location with a proxy_set_header of its own inherits none, and Streamlit refuses a websocket
    # whose Host is not the page's. Every proxied location must set Host itself.
    for match, body in blocks.items():
        if "proxy_pass" in body:
            assert "proxy_set_header Host $http_host;" in body, match


def test_systemd_units_run_the_app_and_the_backup() -> None:
    app = (DEPLOY / "chat.service").read_text()
    assert re.search(r"^ExecStart=\S+/streamlit run app\.py --server\.address 127\.0\.0\.1", app, re.M)
    assert "User=chat" in app and "EnvironmentFile=/etc/chat/chat.env" in app
    backup = (DEPLOY / "chat-backup.service").read_text()
    assert "-m services.store.backup dump /srv/chat/backups/" in backup
    assert "OnCalendar=" in (DEPLOY / "chat-backup.timer").read_text()


def test_the_dev_container_runs_the_readme_commands() -> None:
    text = (ROOT / ".devcontainer" / "devcontainer.json").read_text()
    config = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    readme = (ROOT / "README.md").read_text()
    assert "python:1-3.11" in config["image"]
    assert any("node" in feature for feature in config["features"])
    assert "chromium" in config["onCreateCommand"]
    assert config["postCreateCommand"] in readme  # the test command, as the README spells it
    assert ".venv/bin/streamlit run app.py" in config["postAttachCommand"]


def test_dependabot_watches_pip_and_npm() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert {u["package-ecosystem"] for u in config["updates"]} == {"pip", "npm"}
    # Each watches the folder that holds its manifest.
    for update in config["updates"]:
        manifest = {"pip": "requirements.txt", "npm": "package.json"}[update["package-ecosystem"]]
        assert (ROOT / update["directory"].lstrip("/") / manifest).is_file(), update


def test_the_guide_is_linked_and_its_links_resolve() -> None:
    guide = ROOT / "docs" / "deploy.md"
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", guide.read_text())
    local = [t for t in targets if not t.startswith("http")]
    assert local, "the guide links its configuration files"
    for target in local:
        assert (guide.parent / target).exists(), target
