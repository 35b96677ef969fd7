"""Local accounts for demo deployments, and the local RS256 token issuer.

(Over 400 lines: the accounts file, its atomic writes, the password rules and the local token issuer are one
unit of local sign-in; the issuer moves out when a second account backend arrives.)

Accounts live in a credentials YAML in streamlit-authenticator's standard format
(`credentials: usernames: <name>: {email, first_name, last_name, password: <bcrypt>, roles}`), so the
library's tools read it unchanged and admins can edit it by hand (plain-text passwords written there are
hashed on the next load). Each entry also carries `id`, the account's permanent user id (random for new
accounts; `local:<username>` for accounts made before ids existed, written into the entry on first load so
their stored data stays theirs), and `disabled` when an administrator switched it off. Nobody gets a role
by signing up: the first administrator comes from the one-time setup code (services/sessions.py).

A sign-in is turned into short-lived RS256 tokens signed by a key this module creates in the data
directory (mode 0600); they are checked by the same `TokenVerifier.verify` as Clerk's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import yaml
import zxcvbn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.auth import TokenVerifier
from services.errors import UserError

log = logging.getLogger(__name__)

LOCAL_ISSUER = "urn:chat-app:local"
REVIEWER = "reviewer"
ADMIN = "admin"
GRANTABLE_ROLES = (REVIEWER, ADMIN)
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")
# New ids: a prefix neither Clerk ids (`user_...`) nor the old `local:<username>` ids can have.
ACCOUNT_ID_PREFIX = "acct_"
MIN_PASSWORD_CHARS = 12
# zxcvbn's 0-4 guessability score; 3 = "safely unguessable: moderate protection from offline attacks".
MIN_PASSWORD_SCORE = 3
# bcrypt only looks at the first 72 bytes; a longer password would silently be truncated.
MAX_PASSWORD_BYTES = 72
MAX_NAME_CHARS = 80


# The same bcrypt format streamlit-authenticator writes and reads (its Hasher), used directly: its module
# imports Streamlit, and services/ must not.
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d+\$.{53}$")


def is_password_hash(value: str) -> bool:
    return bool(_BCRYPT_HASH.match(value))


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def password_matches(password: str, hashed: str) -> bool:
    return bcrypt.checkpw(password.encode(), hashed.encode())


# Checked against when the username is unknown, so an unknown name costs the same bcrypt time as a wrong
# password and the response time does not tell which accounts exist.
_DUMMY_HASH = bcrypt.hashpw(b"no such account", bcrypt.gensalt()).decode()


def new_account_id() -> str:
    return ACCOUNT_ID_PREFIX + secrets.token_hex(16)


def password_problem(password: str, *, user_inputs: tuple[str, ...] = ()) -> str | None:
    """Why `password` is not acceptable as a new password, or None. Length first, then zxcvbn (its
    dictionaries of common passwords, names and keyboard patterns, with the user's own name and username)."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"Choose a password of at least {MIN_PASSWORD_CHARS} characters."
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return f"Choose a password of at most {MAX_PASSWORD_BYTES} bytes."
    if password != password.strip():
        return "A password cannot start or end with a space."
    result = zxcvbn.zxcvbn(password, user_inputs=[u for u in user_inputs if u])
    if int(result["score"]) < MIN_PASSWORD_SCORE:
        warning = str((result.get("feedback") or {}).get("warning") or "").strip()
        hint = f" ({warning.rstrip('.')})" if warning else ""
        return f"That password is too easy to guess{hint}. Try a few unrelated words together."
    return None


class AccountError(UserError, ValueError):
    """A sign-up or accounts-file problem; the message is safe to show and says what to change."""


@dataclass(frozen=True)
class Account:
    username: str
    name: str
    email: str
    roles: tuple[str, ...]
    # The permanent id the account's data is stored under (never derived from the username for new accounts).
    id: str = ""
    disabled: bool = False

    @property
    def user_id(self) -> str:
        # Accounts from before ids existed keep `local:<username>` (what their rows are stored under).
        return self.id or legacy_user_id(self.username)


def legacy_user_id(username: str) -> str:
    return f"local:{username}"


def _account(username: str, entry: dict[str, Any]) -> Account:
    name = f"{entry.get('first_name') or ''} {entry.get('last_name') or ''}".strip() or str(entry.get("name") or "")
    roles = entry.get("roles") or []
    if isinstance(roles, str):
        roles = [roles]
    return Account(
        username=username,
        name=name or username,
        email=str(entry.get("email") or ""),
        roles=tuple(str(r) for r in roles),
        id=str(entry.get("id") or legacy_user_id(username)),
        disabled=bool(entry.get("disabled", False)),
    )


def _private_temp(path: Path, text: str) -> str:
    """A fully written, fsynced temp file beside `path`, readable by the owner only; the caller moves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by the owner only."""
    tmp = _private_temp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class AccountStore:
    """The credentials YAML. Every change holds an exclusive lock on a sibling `.lock` file, so two
    sign-ups at once (two tabs, two replicas on one volume) cannot both become the first account."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a", encoding="utf-8") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            raise AccountError(f"The accounts file {self.path} (CHAT_USERS_FILE) is not valid YAML.") from None
        credentials = data.get("credentials") if isinstance(data, dict) else None
        users = (credentials or {}).get("usernames") if isinstance(credentials or {}, dict) else None
        if (
            not isinstance(data, dict)
            or not isinstance(credentials or {}, dict)
            or not isinstance(users or {}, dict)
            or not all(isinstance(entry, dict) for entry in (users or {}).values())
        ):
            raise AccountError(
                f"The accounts file {self.path} (CHAT_USERS_FILE) must have a 'credentials: usernames:' mapping "
                "of username to details."
            )
        return data

    def _users(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        users = (data.get("credentials") or {}).get("usernames") or {}
        return {str(name).lower(): dict(entry or {}) for name, entry in users.items()}

    def _save(self, data: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
        data = dict(data)
        data["credentials"] = {**(data.get("credentials") or {}), "usernames": users}
        _write_private(self.path, yaml.safe_dump(data, default_flow_style=False, allow_unicode=True, sort_keys=True))

    def credentials(self) -> dict[str, Any]:
        """A fresh copy in streamlit-authenticator's `credentials` shape, every password a bcrypt hash."""
        data = self._read()
        users = self._users(data)
        if any(self._needs_normalising(u) for u in users.values()):
            users = self._normalise()
        return {"usernames": users}

    @staticmethod
    def _needs_normalising(entry: dict[str, Any]) -> bool:
        return not is_password_hash(str(entry.get("password") or "")) or not entry.get("id")

    def _normalise(self) -> dict[str, dict[str, Any]]:
        # An admin may write plain-text passwords by hand, as the library's docs show; hash them at rest.
        # An entry without an id gets the one its data is already stored under (`local:<username>`, what
        # ids were before they were random), written down so that it never changes again.
        with self._locked():
            data = self._read()
            users = self._users(data)
            changed = False
            for username, entry in users.items():
                password = str(entry.get("password") or "")
                if password and not is_password_hash(password):
                    entry["password"] = hash_password(password)
                    changed = True
                if not entry.get("id"):
                    entry["id"] = legacy_user_id(username)
                    changed = True
            if changed:
                self._save(data, users)
                log.info("normalised %s (hashed plain-text passwords, recorded account ids)", self.path)
            return users

    def list_accounts(self) -> list[Account]:
        return [_account(name, entry) for name, entry in sorted(self.credentials()["usernames"].items())]

    def by_id(self, user_id: str) -> Account | None:
        for account in self.list_accounts():
            if account.user_id == user_id:
                return account
        return None

    @contextlib.contextmanager
    def _editing(self, username: str) -> Iterator[dict[str, Any]]:
        """The entry of `username`, changed in place and saved atomically under the lock."""
        self.credentials()  # ids and hashes first
        name = username.strip().lower()
        with self._locked():
            data = self._read()
            users = self._users(data)
            entry = users.get(name)
            if entry is None:
                raise AccountError("That account no longer exists.")
            yield entry
            self._save(data, users)

    def set_password(self, username: str, password: str) -> None:
        account = self.get(username)
        if account is None:
            raise AccountError("That account no longer exists.")
        problem = password_problem(password, user_inputs=(account.username, account.name))
        if problem:
            raise AccountError(problem)
        hashed = hash_password(password)
        with self._editing(username) as entry:
            entry["password"] = hashed
            entry.pop("password_link", None)  # a set-password link works once

    def scramble_password(self, username: str) -> None:
        """Replace the password with a random one nobody knows (an administrator's reset)."""
        hashed = hash_password(secrets.token_urlsafe(32))
        with self._editing(username) as entry:
            entry["password"] = hashed

    def set_reset(self, username: str, token_hash: str, expires_at: float) -> None:
        """Record a one-time set-password link (only its hash), replacing any earlier one."""
        with self._editing(username) as entry:
            entry["password_link"] = {"hash": token_hash, "expires": int(expires_at)}

    def by_reset(self, token_hash: str, now: float) -> Account | None:
        for name, entry in self.credentials()["usernames"].items():
            link = entry.get("password_link")
            if (
                isinstance(link, dict)
                and hmac.compare_digest(str(link.get("hash") or ""), token_hash)
                and float(link.get("expires") or 0) > now
                and not entry.get("disabled")
            ):
                return _account(name, entry)
        return None

    def set_disabled(self, username: str, disabled: bool) -> None:
        with self._editing(username) as entry:
            entry["disabled"] = bool(disabled)

    def set_roles(self, username: str, roles: tuple[str, ...]) -> None:
        with self._editing(username) as entry:
            entry["roles"] = [r for r in GRANTABLE_ROLES if r in roles]

    def delete(self, username: str) -> None:
        name = username.strip().lower()
        with self._locked():
            data = self._read()
            users = self._users(data)
            if users.pop(name, None) is not None:
                self._save(data, users)

    def has_accounts(self) -> bool:
        return bool(self._users(self._read()))

    def get(self, username: str) -> Account | None:
        name = username.strip().lower()
        entry = self.credentials()["usernames"].get(name)
        return None if entry is None else _account(name, entry)

    def check_password(self, username: str, password: str) -> Account | None:
        """The account if `password` is its password, else None; the same bcrypt work either way. A
        disabled account still checks (the caller decides what to say)."""
        name = username.strip().lower()
        entry = self.credentials()["usernames"].get(name)
        hashed = str((entry or {}).get("password") or "")
        if entry is None or not is_password_hash(hashed) or len(password.encode()) > MAX_PASSWORD_BYTES:
            password_matches(password[:MAX_PASSWORD_BYTES], _DUMMY_HASH)
            return None
        return _account(name, entry) if password_matches(password, hashed) else None

    def create(
        self,
        username: str,
        password: str | None,
        *,
        name: str = "",
        email: str = "",
        roles: tuple[str, ...] = (),
        first_only: bool = False,
    ) -> Account:
        """Add an account with a new random id and `roles` (nobody gets a role by signing up). With
        `password=None` the account has no password until a set-password link is used. `first_only`
        refuses when any account exists (the first administrator, made with the setup code). Raises
        AccountError with a message the sign-up form can show as is."""
        username = username.strip().lower()
        name = name.strip()
        email = email.strip()
        if not USERNAME_RE.match(username):
            raise AccountError(
                "Choose a username of 3 to 32 characters: lowercase letters, digits, '.', '_' or '-', "
                "starting with a letter or digit."
            )
        if password is not None:
            problem = password_problem(password, user_inputs=(username, name))
            if problem:
                raise AccountError(problem)
        if len(name) > MAX_NAME_CHARS or any(ord(c) < 32 for c in name):
            raise AccountError(f"Keep the display name under {MAX_NAME_CHARS} characters, on one line.")
        if email and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
            raise AccountError("That email address does not look right.")
        # No password yet: a random one nobody knows, so the entry keeps the library's format.
        hashed = hash_password(password if password is not None else secrets.token_urlsafe(32))
        with self._locked():
            data = self._read()
            users = self._users(data)
            if first_only and users:
                raise AccountError("An administrator already exists; sign in instead.")
            if username in users:
                raise AccountError("That username is taken; choose another.")
            users[username] = {
                "id": new_account_id(),
                "email": email,
                "first_name": name or username,
                "last_name": "",
                "password": hashed,
                "roles": [r for r in GRANTABLE_ROLES if r in roles],
                "failed_login_attempts": 0,
                "logged_in": False,
            }
            self._save(data, users)
        return _account(username, users[username])


# --- keys --------------------------------------------------------------------------------------------


def _create_exclusive(path: Path, text: str) -> str:
    """Create `path` with `text` unless it exists; return what is in the file afterwards. A temp file plus
    link() is atomic, so two processes starting together agree on one key and never read half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = _private_temp(path, text)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text(encoding="utf-8")


def load_or_create_signing_key(path: Path) -> rsa.RSAPrivateKey:
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        _create_exclusive(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise AccountError(f"{path} does not hold an RSA private key; delete it to have a new one created.")
    return loaded


def load_or_create_secret(path: Path) -> str:
    if not path.exists():
        _create_exclusive(path, secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()


def is_private_file(path: Path) -> bool:
    """True when only the owner can read `path` (what a signing key needs)."""
    try:
        return path.stat().st_mode & 0o077 == 0
    except FileNotFoundError:
        return True


# --- issuer ------------------------------------------------------------------------------------------


class LocalIssuer:
    """Signs short-lived RS256 tokens for local accounts; `verifier` checks them like Clerk's."""

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        *,
        ttl_s: int,
        issuer: str = LOCAL_ISSUER,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._private_key = private_key
        self.ttl_s = ttl_s
        self.issuer = issuer
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:16]
        self.public_pem = (
            private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.verifier = TokenVerifier(issuer=issuer, public_key_pem=self.public_pem, leeway_s=5, clock=clock)

    def issue(self, account: Account, *, now: float | None = None, session_id: str | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer,
            "sub": account.user_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl_s,
            "name": account.name,
            "username": account.username,
            "roles": list(account.roles),
            "role": "authenticated",
            "jti": secrets.token_hex(8),
        }
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid})
