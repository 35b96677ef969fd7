"""Local accounts' sessions: sign-in, sign-up, lasting sessions, silent token renewal, throttling.

(Over 400 lines: sessions, renewal, throttling and the account and admin actions share one set of rules about
who may do what and when, read best in one place.)

Sessions and tokens are apart, as Clerk does it. Signing in opens a server-side session (a row in
`public.sessions`) whose random secret the browser keeps in an HttpOnly cookie (set by api/auth.py); it
lasts CHAT_SESSION_DAYS and ends earlier when unused for CHAT_SESSION_IDLE_MINUTES. Every script run
finds the session again by that cookie (so a revoked session stops on the tab's next action) and keeps
a short-lived RS256 token (CHAT_TOKEN_TTL_S) for the store and the API, issued anew from the session
once it is half its life or a minute old. The cookie never changes while the session lives, so no open tab
is ever left holding a stale copy.

Failed sign-ins are counted in PostgreSQL per account name and per client address (shared by replicas):
a few are free, then each one blocks the key for a growing delay, then for a fixed lock. Unknown names
and wrong passwords get the same answer and cost the same bcrypt time.

The clock is a seam: `Clock` reads the wall clock plus an offset tests can move (CHAT_TEST_CLOCK_FILE).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.accounts import (
    ADMIN,
    GRANTABLE_ROLES,
    REVIEWER,
    Account,
    AccountError,
    AccountStore,
    LocalIssuer,
    password_problem,
)
from services.auth import AuthError, Principal
from services.errors import UserError
from services.store.signin import AuditRow, PostgresSigninStore, SessionRow
from services.store.supabase_signin import SupabaseSigninStore

log = logging.getLogger(__name__)

# Failures older than this (since the last one) start the count again.
ATTEMPT_WINDOW_S = 900
LOCK_S = 900
ACCOUNT_FREE_FAILURES = 3
ACCOUNT_LOCK_AFTER = 10
# One address can be a whole office behind NAT: it gets more room before it is slowed down.
ADDRESS_FREE_FAILURES = 20
ADDRESS_LOCK_AFTER = 100
SIGNUPS_PER_ADDRESS = 5
SIGNUP_WINDOW_S = 3600
# A busy tab records its use at most this often (one write a minute, not one per click).
TOUCH_EVERY_S = 60
# One-time set-password links (new accounts, resets) work this long.
LINK_TTL_S = 24 * 3600


def account_delay(failures: int) -> float:
    """Seconds a username is blocked after its `failures`-th failure in a row: 0, 0, 0, 2, 4, ... 64, then
    the 15-minute lock from the tenth."""
    if failures >= ACCOUNT_LOCK_AFTER:
        return LOCK_S
    if failures <= ACCOUNT_FREE_FAILURES:
        return 0
    return float(2 ** (failures - ACCOUNT_FREE_FAILURES))


def address_delay(failures: int) -> float:
    if failures >= ADDRESS_LOCK_AFTER:
        return LOCK_S
    if failures <= ADDRESS_FREE_FAILURES:
        return 0
    return float(min(2 ** (failures - ADDRESS_FREE_FAILURES), 60))


def signup_delay(count: int) -> float:
    return SIGNUP_WINDOW_S if count >= SIGNUPS_PER_ADDRESS else 0


class Clock:
    """Wall-clock seconds, plus the number of seconds written in `offset_file` when one is configured
    (browser tests move the server's time forward this way; the server refuses the setting beyond
    localhost)."""

    def __init__(self, offset_file: Path | None = None, wall: Callable[[], float] = time.time) -> None:
        self.offset_file = offset_file
        self._wall = wall

    def offset(self) -> float:
        if self.offset_file is None:
            return 0.0
        try:
            return float(self.offset_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def now(self) -> float:
        return self._wall() + self.offset()


class SignInRefused(UserError):
    """A sign-in, sign-up or password change that did not happen. `code` is stable (the sign-in page
    maps it to its text); `retry_after_s` says how long the caller is blocked."""

    def __init__(self, code: str, message: str, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


INVALID = "Username or password is incorrect."


def wait_text(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def locked_message(seconds: int) -> str:
    return f"Too many failed sign-ins. Try again in {wait_text(seconds)}."


@dataclass(frozen=True)
class Resumed:
    principal: Principal
    token: str
    session: SessionRow


@dataclass(frozen=True)
class SessionPolicy:
    lifetime_s: int
    idle_s: int


class SessionService:
    """What the sign-in routes, the auth gate and the Account and Admin pages call for local accounts."""

    def __init__(
        self,
        store: PostgresSigninStore | SupabaseSigninStore,
        accounts: AccountStore,
        issuer: LocalIssuer,
        *,
        clock: Clock,
        pepper: str,
        policy: SessionPolicy,
        setup_code_path: Path,
        setup_code: str | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.issuer = issuer
        self.clock = clock
        self._pepper = pepper.encode()
        self.policy = policy
        self._setup_code_path = setup_code_path
        self._setup_code_setting = setup_code

    # --- cookie secrets ---------------------------------------------------------------------------

    def secret_hash(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()

    def sign_note(self, text: str) -> str:
        """A MAC over a message the sign-in route sends back through the URL, so the page can tell its own
        messages from text put in a link by someone else."""
        return hmac.new(self._pepper, b"note:" + text.encode(), hashlib.sha256).hexdigest()[:32]

    def note_is_ours(self, text: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign_note(text), signature)

    def _open(self, account: Account, *, address: str, user_agent: str) -> str:
        secret = secrets.token_urlsafe(32)
        self.store.open_session(
            user_id=account.user_id,
            secret_hash=self.secret_hash(secret),
            now=self.clock.now(),
            lifetime_s=self.policy.lifetime_s,
            idle_timeout_s=self.policy.idle_s,
            user_agent=user_agent,
            client_address=address,
        )
        return secret

    # --- first administrator ----------------------------------------------------------------------

    def setup_code(self) -> str | None:
        """The one-time code that creates the first administrator, while no account exists: CHAT_SETUP_CODE,
        or one created in the keys directory (shared by processes on one data directory)."""
        if self.accounts.has_accounts():
            return None
        if self._setup_code_setting:
            return self._setup_code_setting
        path = self._setup_code_path
        if not path.exists():
            code = "-".join(secrets.token_hex(3) for _ in range(4))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(code)
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            tmp.unlink()
        return path.read_text().strip()

    def announce_setup_code(self) -> None:
        code = self.setup_code()
        if code is not None and not self._setup_code_setting:
            log.warning(
                "No accounts exist yet. Create the first administrator on the sign-in page with the setup code %s"
                " (valid once).",
                code,
            )

    # --- sign-in and sign-up ----------------------------------------------------------------------

    def _blocked_for(self, keys: list[str], now: float) -> int:
        found = self.store.attempts(keys)
        until = max((a.blocked_until.timestamp() for a in found.values() if a.blocked_until), default=0.0)
        # Microsecond timestamps: a 32 s block read back at once is 32.000001 s, which must not say 33.
        return max(0, math.ceil(until - now - 0.001))

    def sign_in(self, username: str, password: str, *, address: str, user_agent: str = "") -> str:
        """A new session's cookie secret, or SignInRefused: 'locked' (with the wait) before any password is
        checked, 'invalid' for an unknown name or a wrong password alike, 'disabled'."""
        name = username.strip().lower()[:64]
        account_key, address_key = f"account:{name}", f"address:{address or 'unknown'}"
        now = self.clock.now()
        blocked = self._blocked_for([account_key, address_key], now)
        if blocked:
            raise SignInRefused("locked", locked_message(blocked), blocked)
        account = self.accounts.check_password(name, password) if name and password else None
        if account is None:
            self.store.record_failure(account_key, now=now, window_s=ATTEMPT_WINDOW_S, delay_for=account_delay)
            self.store.record_failure(address_key, now=now, window_s=ATTEMPT_WINDOW_S, delay_for=address_delay)
            raise SignInRefused("invalid", INVALID, self._blocked_for([account_key, address_key], now))
        if account.disabled:
            raise SignInRefused("disabled", "This account is switched off. Ask an administrator.")
        self.store.clear_attempts(account_key)
        return self._open(account, address=address, user_agent=user_agent)

    def sign_up(
        self,
        *,
        username: str,
        name: str,
        password: str,
        repeat: str,
        setup_code: str,
        allowed: bool,
        address: str,
        user_agent: str = "",
    ) -> str:
        """Create an account and open its session. While no account exists, only the setup code creates
        one, and it becomes the administrator (and reviewer); after that, sign-up must be `allowed` and
        is limited per address. Raises SignInRefused ('closed', 'rate_limited', 'setup_code',
        'mismatch', 'account' with the account rule that failed)."""
        now = self.clock.now()
        signup_key = f"signup:{address or 'unknown'}"
        blocked = self._blocked_for([signup_key, f"address:{address or 'unknown'}"], now)
        if blocked:
            message = f"Too many attempts from your network. Try again in {wait_text(blocked)}."
            raise SignInRefused("rate_limited", message, blocked)
        expected = self.setup_code()
        first = expected is not None
        if first:
            if not hmac.compare_digest(setup_code.strip().encode(), (expected or "").encode()):
                self.store.record_failure(
                    f"address:{address or 'unknown'}", now=now, window_s=ATTEMPT_WINDOW_S, delay_for=address_delay
                )
                raise SignInRefused("setup_code", "That setup code is not right. It is printed in the server log.")
        elif not allowed:
            raise SignInRefused("closed", "Sign-up is switched off here. Ask an administrator for an account.")
        if password != repeat:
            raise SignInRefused("mismatch", "The two passwords do not match.")
        try:
            account = self.accounts.create(
                username, password, name=name, roles=(ADMIN, REVIEWER) if first else (), first_only=first
            )
        except AccountError as exc:
            raise SignInRefused("account", exc.message) from None
        if first:
            with contextlib.suppress(FileNotFoundError):
                self._setup_code_path.unlink()
            self.store.audit(None, "account.first_admin", account.user_id, {"username": account.username})
            log.info("created the first administrator, %s", account.username)
        else:
            self.store.record_failure(signup_key, now=now, window_s=SIGNUP_WINDOW_S, delay_for=signup_delay)
        return self._open(account, address=address, user_agent=user_agent)

    # --- each script run --------------------------------------------------------------------------

    def resume(self, secret: str, token: str | None = None) -> Resumed | None:
        """The principal of the live session behind `secret`, keeping `token` while it has more than half its
        life left and still says what the account says; otherwise a new token. None when the session is
        unknown, revoked, expired or idle too long, or its account is gone or switched off."""
        now = self.clock.now()
        session = self.store.find_session(self.secret_hash(secret), now=now, touch_after_s=TOUCH_EVERY_S)
        if session is None:
            return None
        account = self.accounts.by_id(session.user_id)
        if account is None or account.disabled:
            self.store.revoke_user_sessions(session.user_id, now=now)
            return None
        if token:
            kept = self._still_good(token, account, session, now)
            if kept is not None:
                return Resumed(kept, token, session)
        fresh = self.issuer.issue(account, now=now, session_id=str(session.id))
        return Resumed(self.issuer.verifier.verify(fresh), fresh, session)

    @property
    def renew_after_s(self) -> float:
        """A token older than this is replaced on the next run: half its life, but at most a minute, so a
        reply that starts now has nearly a whole token's life (4 of 5 minutes by default) to be stored in."""
        return min(60.0, self.issuer.ttl_s / 2)

    def _still_good(self, token: str, account: Account, session: SessionRow, now: float) -> Principal | None:
        try:
            principal = self.issuer.verifier.verify(token)
        except AuthError:
            return None
        claims = principal.claims
        exp = claims.get("exp")
        if (
            principal.user_id != account.user_id
            or claims.get("sid") != str(session.id)
            or tuple(claims.get("roles") or ()) != account.roles
            or not isinstance(exp, int | float)
            or exp - now < self.issuer.ttl_s - self.renew_after_s
        ):
            return None
        return principal

    def sign_out(self, secret: str) -> None:
        user_id = self.store.revoke_by_hash(self.secret_hash(secret), now=self.clock.now())
        if user_id is not None:
            log.info("session signed out")

    # --- the Account page -------------------------------------------------------------------------

    def _own_account(self, principal: Principal) -> Account:
        account = self.accounts.by_id(principal.user_id)
        if account is None or account.disabled:
            raise SignInRefused("gone", "This account no longer exists or is switched off.")
        return account

    @staticmethod
    def current_session_id(principal: Principal) -> str | None:
        sid = principal.claims.get("sid")
        return sid if isinstance(sid, str) else None

    def list_sessions(self, principal: Principal) -> list[SessionRow]:
        return self.store.list_sessions(principal, now=self.clock.now())

    def sign_out_others(self, principal: Principal) -> int:
        """Revoke every session of the caller but this tab's own; returns how many ended."""
        count = self.store.revoke_own_sessions(
            principal, now=self.clock.now(), keep=_uuid(self.current_session_id(principal))
        )
        self.store.audit(principal, "session.sign_out_others", principal.user_id, {"count": count})
        return count

    def change_password(self, principal: Principal, current: str, new: str, repeat: str) -> int:
        """Set a new password after checking the current one (throttled like a sign-in), then sign out every
        other session. Returns how many other sessions ended."""
        account = self._own_account(principal)
        now = self.clock.now()
        key = f"account:{account.username}"
        blocked = self._blocked_for([key], now)
        if blocked:
            raise SignInRefused("locked", locked_message(blocked), blocked)
        if self.accounts.check_password(account.username, current) is None:
            self.store.record_failure(key, now=now, window_s=ATTEMPT_WINDOW_S, delay_for=account_delay)
            raise SignInRefused("invalid", "Your current password is not right.")
        if new != repeat:
            raise SignInRefused("mismatch", "The two new passwords do not match.")
        if new == current:
            raise SignInRefused("same", "Choose a password different from the current one.")
        try:
            self.accounts.set_password(account.username, new)
        except AccountError as exc:
            raise SignInRefused("account", exc.message) from None
        ended = self.store.revoke_user_sessions(
            account.user_id, now=now, keep=_uuid(self.current_session_id(principal))
        )
        self.store.audit(principal, "account.password_change", account.user_id, {"other_sessions_ended": ended})
        return ended

    def delete_account(self, principal: Principal, typed: str, erase: Callable[[Principal], int]) -> int:
        """Delete the caller's account and all its data, once they typed their username. `erase` deletes
        the stored history (the chat store's delete_all_user_data). Returns the messages deleted."""
        account = self._own_account(principal)
        if typed.strip().lower() != account.username:
            raise SignInRefused("confirm", f"Type your username, {account.username}, to confirm.")
        if ADMIN in account.roles and self._admin_count() <= 1:
            raise SignInRefused("last_admin", "You are the only administrator: make someone else one first.")
        deleted = erase(principal)
        self.store.audit(principal, "account.delete", account.user_id, {"username": account.username})
        self.store.revoke_user_sessions(account.user_id, now=self.clock.now())
        self.store.delete_user_sessions(account.user_id)
        self.accounts.delete(account.username)
        return deleted

    # --- the Admin page ---------------------------------------------------------------------------

    def _admin(self, principal: Principal) -> Account:
        actor = self._own_account(principal)
        if ADMIN not in actor.roles:
            raise SignInRefused("forbidden", "Only administrators can do that.")
        return actor

    def _admin_count(self) -> int:
        return sum(1 for a in self.accounts.list_accounts() if ADMIN in a.roles and not a.disabled)

    def list_accounts(self, principal: Principal) -> list[Account]:
        self._admin(principal)
        return self.accounts.list_accounts()

    def _target(self, username: str) -> Account:
        account = self.accounts.get(username)
        if account is None:
            raise SignInRefused("gone", "That account no longer exists.")
        return account

    def _new_link(self, account: Account) -> str:
        token = secrets.token_urlsafe(24)
        self.accounts.set_reset(account.username, self.secret_hash(token), self.clock.now() + LINK_TTL_S)
        return token

    def create_account(self, principal: Principal, username: str, name: str, roles: tuple[str, ...]) -> str:
        """A new account without a usable password; returns the one-time set-password token for its link."""
        self._admin(principal)
        try:
            account = self.accounts.create(username, None, name=name, roles=roles)
        except AccountError as exc:
            raise SignInRefused("account", exc.message) from None
        token = self._new_link(account)
        self.store.audit(
            principal, "account.create", account.user_id, {"username": account.username, "roles": list(account.roles)}
        )
        return token

    def set_disabled(self, principal: Principal, username: str, disabled: bool) -> None:
        actor = self._admin(principal)
        target = self._target(username)
        if target.user_id == actor.user_id and disabled:
            raise SignInRefused("self", "You cannot switch off your own account.")
        self.accounts.set_disabled(target.username, disabled)
        if disabled:
            self.store.revoke_user_sessions(target.user_id, now=self.clock.now())
        self.store.audit(
            principal,
            "account.disable" if disabled else "account.enable",
            target.user_id,
            {"username": target.username},
        )

    def reset_password(self, principal: Principal, username: str) -> str:
        """Replace the password with an unknown one, end the account's sessions, return a new link token."""
        self._admin(principal)
        target = self._target(username)
        self.accounts.scramble_password(target.username)
        self.store.revoke_user_sessions(target.user_id, now=self.clock.now())
        token = self._new_link(target)
        self.store.audit(principal, "account.reset_password", target.user_id, {"username": target.username})
        return token

    def set_roles(self, principal: Principal, username: str, roles: tuple[str, ...]) -> None:
        actor = self._admin(principal)
        target = self._target(username)
        wanted = tuple(r for r in GRANTABLE_ROLES if r in roles)
        if ADMIN in target.roles and ADMIN not in wanted and self._admin_count() <= 1:
            raise SignInRefused("last_admin", "That is the only administrator: make someone else one first.")
        self.accounts.set_roles(target.username, wanted)
        detail = {"username": target.username, "from": list(target.roles), "to": list(wanted)}
        self.store.audit(principal, "account.roles", target.user_id, {**detail, "own": actor.user_id == target.user_id})

    def audit_entries(self, principal: Principal, limit: int = 200) -> list[AuditRow]:
        self._admin(principal)
        return self.store.read_audit(principal, limit=limit)

    # --- one-time set-password links ------------------------------------------------------------------

    def link_account(self, token: str) -> Account | None:
        """The account a set-password link is for, while the link is unused and fresh."""
        return self.accounts.by_reset(self.secret_hash(token), self.clock.now()) if token else None

    def use_link(self, token: str, password: str, repeat: str) -> Account:
        account = self.link_account(token)
        if account is None:
            raise SignInRefused("link", "This link has been used or has expired. Ask an administrator for a new one.")
        if password != repeat:
            raise SignInRefused("mismatch", "The two passwords do not match.")
        problem = password_problem(password, user_inputs=(account.username, account.name))
        if problem:
            raise SignInRefused("account", problem)
        self.accounts.set_password(account.username, password)  # also clears the link
        self.store.revoke_user_sessions(account.user_id, now=self.clock.now())
        self.store.audit(None, "account.password_set_by_link", account.user_id, {"username": account.username})
        return account


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
