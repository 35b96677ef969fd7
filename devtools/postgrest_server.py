"""A local stand-in for Supabase's Data API (PostgREST behind the API gateway), for tests of supabase-py.

PostgREST cannot be installed on these machines (not on PyPI, Debian or npm). This server takes the
requests supabase-py sends to `/rest/v1/...`, checks them the way the real stack does, and runs them
against a real PostgreSQL the way PostgREST does:

- the gateway's key check: an `apikey` header equal to the project's publishable key, else 401 with
  the gateway's `{"message": ..., "hint": ...}` body;
- the bearer: an RS256 JWT verified against the JWKS it was given (Supabase's third-party auth with a
  custom JWKS); a bad one answers 401 PGRST301, an expired one 401 PGRST303; no bearer runs as `anon`;
- one transaction per request: `set_config('role', <role claim>, true)` and
  `set_config('request.jwt.claims', <claims>, true)`, read-only for GET and for calls of STABLE or
  IMMUTABLE functions (as PostgREST does);
- `POST /rest/v1/rpc/<fn>` with a JSON object of named arguments, bound through `json_to_record` like
  PostgREST binds them; set-returning and composite results as a JSON array, scalars as a JSON value,
  `void` as 204;
- single-table `GET`/`POST`/`PATCH`/`DELETE` with `select=` (plain column names), filters
  (`eq neq gt gte lt lte like ilike is in`, optionally `not.`), `order=`, `limit=`, `offset=`,
  `on_conflict=` and the `Prefer` parts `return=`, `resolution=`, `missing=default`, `count=exact`;
- `Accept: application/vnd.pgrst.object+json` (`.single()`): exactly one row or 406 PGRST116;
- PostgreSQL errors as `{"code","details","hint","message"}` with PostgREST's status table (23505 409,
  42501 403 when authenticated / 401 when anon, P0001 400, 42883 404, 08* 503, 57* 500 ...).

Anything else (embedding, `or=`, aliases, casts, GET rpc) is refused with 400 PGRST100 and the word
"unsupported", so a test fails loudly instead of passing on syntax the real server would read otherwise.
Each request is recorded (`requests`); `faults` scripts answers for the next requests (a status and body,
a delay, or a hang until released) to test timeouts and outages.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
import psycopg
from jwt.algorithms import RSAAlgorithm
from psycopg import sql
from psycopg_pool import ConnectionPool

OBJECT_MEDIA = "application/vnd.pgrst.object+json"
DB_ROLES = ("anon", "authenticated")
# Supabase's default statement timeout for the `authenticated` role.
STATEMENT_TIMEOUT = "8s"
_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "like", "ilike": "ilike"}
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass
class Fault:
    """A scripted answer for one request: `status`/`body` instead of running it, after `delay_s`; with
    `hang`, the server holds the request until `release` is set (or the server stops). With `path`, it waits
    for a request to that path, and lets `skip` of those through first (the second file of an upload)."""

    status: int = 503
    body: Any = field(default_factory=lambda: {"message": "Service Unavailable"})
    delay_s: float = 0.0
    hang: bool = False
    content_type: str = "application/json"
    path: str | None = None
    skip: int = 0


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int = 0  # what the server answered (0 while it has not)
    answer: Any = None  # the JSON it answered, if any

    @property
    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)


class RestError(Exception):
    """An answer in PostgREST's error shape."""

    def __init__(
        self, status: int, code: str | None, message: str, details: Any = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "details": details, "hint": hint, "message": message}


def status_for(sqlstate: str, *, authenticated: bool) -> int:
    """PostgREST's table from SQLSTATE to HTTP status (docs/references/errors.rst)."""
    exact = {
        "23503": 409, "23505": 409, "25006": 405, "53400": 500, "P0001": 400,
        "42883": 404, "42P01": 404, "42P17": 500,
    }  # fmt: skip
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "42501":
        return 403 if authenticated else 401
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    prefixes = {
        "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500, "39": 500,
        "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500, "F0": 500, "HV": 500,
        "P0": 500, "XX": 500,
    }  # fmt: skip
    return prefixes.get(sqlstate[:2], 400)


def unsupported(what: str) -> RestError:
    return RestError(400, "PGRST100", f"unsupported by the local PostgREST stand-in: {what}")


class PostgrestServer:
    """Serve `/rest/v1` on 127.0.0.1 over `conninfo` (a login role that may `set role` to anon and
    authenticated, like PostgREST's authenticator). `jwks()` returns the key set tokens are checked
    against; `anon_key` is the publishable key the gateway expects in `apikey`."""

    def __init__(
        self,
        conninfo: str,
        *,
        anon_key: str,
        jwks: Callable[[], Mapping[str, Any]],
        leeway_s: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.anon_key = anon_key
        self.jwks = jwks
        self.leeway_s = leeway_s
        self.clock = clock
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=4, open=True, name="postgrest-standin")
        handler = type("Handler", (_Handler,), {"rest": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="postgrest-standin", daemon=True)

    @property
    def url(self) -> str:
        """The project URL as supabase-py takes it (it appends /rest/v1)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def start(self) -> PostgrestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._pool.close()

    def __enter__(self) -> PostgrestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, recorded: Recorded) -> Fault | None:
        with self._lock:
            self.requests.append(recorded)
            for fault in self.faults:
                if fault.path is not None and recorded.path != fault.path:
                    continue
                if fault.skip:
                    fault.skip -= 1
                    return None
                self.faults.remove(fault)
                return fault
            return None

    # --- the gateway and the JWT ------------------------------------------------------------------------

    def check_apikey(self, headers: Mapping[str, str]) -> None:
        key = headers.get("apikey")
        if key is None:
            raise RestError(
                401, None, "No API key found in request", hint="No `apikey` request header or url param was found."
            )
        if key != self.anon_key:
            raise RestError(
                401, None, "Invalid API key", hint="Double check your Supabase `anon` or `service_role` API key."
            )

    def claims_for(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            return {"role": "anon"}
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise RestError(401, "PGRST301", "Expected a bearer token", hint=None)
        if token == self.anon_key:
            return {"role": "anon"}  # supabase-py sends the key as the bearer when it has no session
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise RestError(401, "PGRST301", f"JWSError {type(exc).__name__}") from None
        keys = {k.get("kid"): k for k in self.jwks().get("keys", [])}
        jwk = keys.get(header.get("kid"))
        if header.get("alg") != "RS256" or jwk is None:
            raise RestError(401, "PGRST301", "No suitable key or wrong key type")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                RSAAlgorithm.from_jwk(json.dumps(jwk)),  # type: ignore[arg-type]
                algorithms=["RS256"],
                # The times are checked below against this server's own clock (tests move it).
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise RestError(401, "PGRST301", f"JWSError {type(exc).__name__}") from None
        now = self.clock()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if isinstance(exp, int | float) and exp + self.leeway_s <= now:
            raise RestError(401, "PGRST303", "JWT expired")
        if isinstance(nbf, int | float) and nbf - self.leeway_s > now:
            raise RestError(401, "PGRST303", "JWT not yet valid")
        if isinstance(iat, int | float) and iat - self.leeway_s > now:
            raise RestError(401, "PGRST303", "JWT issued at future")
        claims.setdefault("role", "anon")
        return claims

    # --- running a request ------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        self.check_apikey(headers)
        claims = self.claims_for(headers.get("authorization"))
        if not path.startswith("/rest/v1/"):
            raise RestError(404, None, "no Route matched with those values")
        resource = unquote(path[len("/rest/v1/") :])
        if headers.get("accept-profile", "public") != "public" or headers.get("content-profile", "public") != "public":
            raise RestError(406, "PGRST106", "The schema must be one of the following: public")
        body = self._json_body(method, raw)
        single = OBJECT_MEDIA in headers.get("accept", "")
        prefer = _prefer(headers.get("prefer", ""))
        params = parse_qsl(query, keep_blank_values=True)
        if resource.startswith("rpc/"):
            if method != "POST":
                raise unsupported(f"{method} on a function (the store calls functions with POST)")
            if params:
                raise unsupported("query parameters on a function call")
            fn = resource[len("rpc/") :]
            return self._run(claims, lambda conn: self._rpc(conn, fn, body), single=single, read_only=None, fn=fn)
        if not _NAME.fullmatch(resource):
            raise RestError(404, "PGRST205", f"Could not find the table 'public.{resource}' in the schema cache")
        table = resource
        return self._run(
            claims,
            lambda conn: self._table(conn, method, table, params, body, prefer),
            single=single,
            read_only=method in ("GET", "HEAD"),
            prefer=prefer,
            method=method,
        )

    @staticmethod
    def _json_body(method: str, raw: bytes) -> Any:
        if method in ("GET", "HEAD", "DELETE") or not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise RestError(400, "PGRST102", "Empty or invalid json") from None

    def _run(
        self,
        claims: dict[str, Any],
        work: Callable[[psycopg.Connection], tuple[Any, int, int | None]],
        *,
        single: bool,
        read_only: bool | None,
        fn: str | None = None,
        prefer: dict[str, str] | None = None,
        method: str = "POST",
    ) -> tuple[int, dict[str, str], bytes]:
        prefer = prefer or {}
        role = str(claims.get("role"))
        authenticated = role != "anon"
        try:
            with self._pool.connection() as conn:
                conn.autocommit = True
                if read_only is None and fn is not None:
                    read_only = self._function_is_read_only(conn, fn)
                with conn.transaction():
                    if read_only:
                        conn.execute("set transaction read only")
                    conn.execute(
                        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
                        " set_config('statement_timeout', %s, true)",
                        [role, json.dumps(claims, separators=(",", ":")), STATEMENT_TIMEOUT],
                    )
                    data, status, total = work(conn)
                    if single and isinstance(data, list) and len(data) != 1:
                        # PostgREST rolls the statement back when a singular answer is impossible.
                        raise _Rollback(
                            RestError(
                                406,
                                "PGRST116",
                                "Cannot coerce the result to a single JSON object",
                                details=f"The result contains {len(data)} rows",
                            )
                        )
        except _Rollback as rollback:
            raise rollback.error from None
        except psycopg.Error as exc:
            diag = exc.diag
            state = diag.sqlstate or "XX000"
            raise RestError(
                status_for(state, authenticated=authenticated),
                state,
                diag.message_primary or str(exc),
                details=diag.message_detail,
                hint=diag.message_hint,
            ) from None
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if fn is None:
            count = len(data) if isinstance(data, list) else 0
            headers["Content-Range"] = (
                (f"0-{count - 1}" if count else "*") + "/" + ("*" if total is None else str(total))
            )
        if single and isinstance(data, list):
            data = data[0]
        if status == 204 or (fn is None and method != "GET" and prefer.get("return", "minimal") != "representation"):
            return (204 if method != "POST" or fn is not None else 201), headers, b""
        return status, headers, json.dumps(data).encode()

    @staticmethod
    def _function_is_read_only(conn: psycopg.Connection, fn: str) -> bool:
        row = conn.execute(
            "select bool_and(p.provolatile in ('s', 'i')) from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'public' and p.proname = %s",
            [fn],
        ).fetchone()
        return bool(row and row[0])

    # --- functions --------------------------------------------------------------------------------------

    def _rpc(self, conn: psycopg.Connection, fn: str, body: Any) -> tuple[Any, int, int | None]:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise unsupported("a function body that is not a JSON object")
        candidates = conn.execute(
            "select p.oid::regprocedure::text, p.proretset, p.prorettype = 'void'::regtype,"
            " (t.typtype = 'c' or p.prorettype = 'record'::regtype"
            "  or p.proargmodes && array['o', 'b', 't']::\"char\"[]),"
            " p.pronargdefaults,"
            " coalesce((select array_agg(a.name order by a.ord) from unnest(p.proargnames, coalesce(p.proargmodes,"
            "   array_fill('i'::\"char\", array[p.pronargs]))) with ordinality a(name, mode, ord)"
            "   where a.mode in ('i', 'b', 'v')), '{}'),"
            " coalesce((select array_agg(format_type(x.t, null) order by x.ord)"
            "   from unnest(p.proargtypes::oid[]) with ordinality x(t, ord)), '{}')"
            " from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_type t on t.oid = p.prorettype"
            " where n.nspname = 'public' and p.proname = %s",
            [fn],
        ).fetchall()
        given = set(body)
        chosen = None
        for candidate in candidates:
            names, types, n_defaults = list(candidate[5]), list(candidate[6]), candidate[4]
            if len(names) != len(types) or any(not n for n in names):
                continue  # unnamed arguments cannot be called with a JSON object
            if set(names[: len(names) - n_defaults]) <= given <= set(names):
                chosen = candidate
                break
        if chosen is None:
            raise RestError(
                404,
                "PGRST202",
                f"Could not find the function public.{fn}({', '.join(sorted(given))}) in the schema cache",
                hint="If a new function was created in the database with this name and parameters, try reloading "
                "the schema cache.",
            )
        _, returns_set, returns_void, composite, _, names, types = chosen
        used = [(n, t) for n, t in zip(names, types, strict=True) if n in given]
        record = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in used)
        call = sql.SQL("public.{}({})").format(
            sql.Identifier(fn),
            sql.SQL(", ").join(sql.SQL("{} := a.{}").format(sql.Identifier(n), sql.Identifier(n)) for n, _ in used),
        )
        source = sql.SQL("json_to_record(%s::json) as a({})").format(record) if used else sql.SQL("(select 1) as a")
        if returns_void:
            conn.execute(sql.SQL("select {} from {}").format(call, source), [json.dumps(body)] if used else [])
            return None, 204, None
        if composite:
            # Named OUT/TABLE columns answer objects, even a single one (PostgREST since #1931); the subquery
            # names the row's columns after them.
            query = sql.SQL("select coalesce(json_agg(r), '[]') from {}, lateral (select * from {}) as r").format(
                source, call
            )
        elif returns_set:
            query = sql.SQL("select coalesce(json_agg(r.v), '[]') from {}, lateral {} as r(v)").format(source, call)
        else:
            query = sql.SQL("select to_json({}) from {}").format(call, source)
        row = conn.execute(query, [json.dumps(body)] if used else []).fetchone()
        data = row[0] if row else None
        if composite and not returns_set:
            # A function returning one composite answers an object (null fields when it returned null).
            data = data[0] if isinstance(data, list) and data else None
        return data, 200, None

    # --- tables -----------------------------------------------------------------------------------------

    def _table(
        self,
        conn: psycopg.Connection,
        method: str,
        table: str,
        params: list[tuple[str, str]],
        body: Any,
        prefer: dict[str, str],
    ) -> tuple[Any, int, int | None]:
        columns: dict[str, str] = dict(
            conn.execute(
                "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a"
                " where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped",
                [f"public.{table}"],
            ).fetchall()
        )
        if not columns:
            raise RestError(404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache")
        # Aliased `t` and every column qualified: an update's `from json_populate_record(...) b` has the same
        # column names.
        target = sql.SQL("public.{}").format(sql.Identifier(table))
        select: sql.Composable = sql.SQL("t.*")
        where: list[sql.Composable] = []
        args: list[Any] = []
        order: list[sql.Composable] = []
        limit = offset = None
        on_conflict: list[str] | None = None
        chosen_columns: list[str] | None = None
        for key, value in params:
            if key == "select":
                select = _select(value, columns)
            elif key == "order":
                order = [_order(part, columns) for part in value.split(",")]
            elif key == "limit":
                limit = _int(key, value)
            elif key == "offset":
                offset = _int(key, value)
            elif key == "on_conflict":
                on_conflict = [c.strip() for c in value.split(",")]
                for c in on_conflict:
                    _column(c, columns)
            elif key == "columns" and method == "POST":
                # Which keys of the body are inserted (postgrest-py sends it with a list of rows).
                chosen_columns = [_column(c.strip().strip('"'), columns) for c in value.split(",")]
            elif key in ("or", "and", "columns") or "." in key:
                raise unsupported(f"the query parameter {key!r}")
            else:
                condition, values = _filter(key, value, columns)
                where.append(condition)
                args.extend(values)
        condition = sql.SQL(" and ").join(where) if where else sql.SQL("true")
        returning = prefer.get("return") == "representation"
        count_wanted = prefer.get("count") == "exact"
        if method == "GET":
            query = sql.SQL("select {} from {} as t where {}").format(select, target, condition)
            if order:
                query += sql.SQL(" order by ") + sql.SQL(", ").join(order)
            if limit is not None:
                query += sql.SQL(" limit {}").format(sql.Literal(limit))
            if offset is not None:
                query += sql.SQL(" offset {}").format(sql.Literal(offset))
            rows = _json_rows(conn, query, args)
            total = None
            if count_wanted:
                counted = conn.execute(sql.SQL("select count(*) from {} as t where {}").format(target, condition), args)
                total = int(counted.fetchone()[0])  # type: ignore[index]
            return rows, 200, total
        if order or limit is not None or offset is not None:
            raise unsupported(f"order/limit on {method}")
        tail = sql.SQL(" returning {}").format(select) if returning else sql.SQL("")
        if method == "POST":
            rows_in = body if isinstance(body, list) else [body]
            if not rows_in or not all(isinstance(r, dict) for r in rows_in) or where:
                raise RestError(400, "PGRST102", "Empty or invalid json")
            keys = chosen_columns or list(dict.fromkeys(k for r in rows_in for k in r))
            for k in keys:
                _column(k, columns)
            cols = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
            query = sql.SQL(
                "insert into {} as t ({}) select {} from json_populate_recordset(null::{}, %s::json)"
            ).format(target, cols, cols, target)
            resolution = prefer.get("resolution")
            if resolution is not None:
                conflict_cols = on_conflict or _primary_key(conn, table)
                conflict = sql.SQL(", ").join(sql.Identifier(c) for c in conflict_cols)
                if resolution == "ignore-duplicates":
                    query += sql.SQL(" on conflict ({}) do nothing").format(conflict)
                elif resolution == "merge-duplicates":
                    updates = sql.SQL(", ").join(
                        sql.SQL("{} = excluded.{}").format(sql.Identifier(k), sql.Identifier(k))
                        for k in keys
                        if k not in conflict_cols
                    )
                    query += sql.SQL(" on conflict ({}) do update set {}").format(conflict, updates)
                else:
                    raise unsupported(f"resolution={resolution}")
            elif on_conflict is not None:
                raise unsupported("on_conflict without a resolution")
            rows = _json_rows(conn, query + tail, [json.dumps(rows_in)], returning=returning)
            return rows, 201, len(rows) if count_wanted else None
        if method == "PATCH":
            if not isinstance(body, dict) or not body:
                raise RestError(400, "PGRST102", "Empty or invalid json")
            for k in body:
                _column(k, columns)
            sets = sql.SQL(", ").join(sql.SQL("{} = b.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in body)
            query = sql.SQL("update {} as t set {} from json_populate_record(null::{}, %s::json) as b where {}").format(
                target, sets, target, condition
            )
            rows = _json_rows(conn, query + tail, [json.dumps(body), *args], returning=returning)
            return rows, 200, len(rows) if count_wanted else None
        if method == "DELETE":
            query = sql.SQL("delete from {} as t where {}").format(target, condition) + tail
            rows = _json_rows(conn, query, args, returning=returning)
            return rows, 200, len(rows) if count_wanted else None
        raise RestError(405, "PGRST117", f"Unsupported HTTP method: {method}")


class _Rollback(Exception):
    def __init__(self, error: RestError) -> None:
        self.error = error


def _json_rows(
    conn: psycopg.Connection, query: sql.Composed | sql.SQL, args: list[Any], *, returning: bool = True
) -> list[Any]:
    """Run `query`; with `returning`, its rows as JSON objects (via to_json, as PostgREST renders them)."""
    if not returning:
        conn.execute(query, args)
        return []
    wrapped = sql.SQL("with q as ({}) select coalesce(json_agg(q), '[]') from q").format(query)
    row = conn.execute(wrapped, args).fetchone()
    return list(row[0]) if row else []


def _primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)"
        " where i.indrelid = to_regclass(%s) and i.indisprimary order by a.attnum",
        [f"public.{table}"],
    ).fetchall()
    return [r[0] for r in rows]


def _column(name: str, columns: Mapping[str, str]) -> str:
    if name not in columns:
        raise RestError(400, "PGRST204", f"Could not find the '{name}' column in the schema cache")
    return name


def _select(value: str, columns: Mapping[str, str]) -> sql.Composable:
    parts = [p.strip() for p in value.split(",")]
    if parts == ["*"]:
        return sql.SQL("t.*")
    for p in parts:
        if not _NAME.fullmatch(p):
            raise unsupported(f"select={value!r} (only plain column names)")
        if p not in columns:
            raise RestError(400, "42703", f"column {p} does not exist")
    return sql.SQL(", ").join(sql.Identifier("t", p) for p in parts)


def _order(part: str, columns: Mapping[str, str]) -> sql.Composable:
    name, *modifiers = part.strip().split(".")
    _column(name, columns)
    words = {"asc": "asc", "desc": "desc", "nullsfirst": "nulls first", "nullslast": "nulls last"}
    if any(m not in words for m in modifiers):
        raise RestError(400, "PGRST100", f'"failed to parse order ({part})"')
    return sql.SQL(" ").join([sql.Identifier("t", name), *(sql.SQL(words[m]) for m in modifiers)])


def _int(key: str, value: str) -> int:
    if not value.isdigit():
        raise RestError(400, "PGRST100", f'"failed to parse {key} ({value})"')
    return int(value)


def _filter(column: str, value: str, columns: Mapping[str, str]) -> tuple[sql.Composable, list[Any]]:
    _column(column, columns)
    kind = columns[column]
    negate = value.startswith("not.")
    if negate:
        value = value[len("not.") :]
    op, dot, operand = value.partition(".")
    if not dot:
        raise RestError(400, "PGRST100", f'"failed to parse filter ({value})"')
    ident = sql.Identifier("t", column)
    if op in _OPS:
        condition: sql.Composable = sql.SQL("{} {} %s::{}").format(
            ident, sql.SQL(_OPS[op]), sql.SQL("text" if op in ("like", "ilike") else kind)
        )
        values: list[Any] = [operand.replace("*", "%") if op in ("like", "ilike") else operand]
    elif op == "is":
        if operand not in ("null", "true", "false", "unknown"):
            raise RestError(400, "PGRST100", f'"failed to parse filter (is.{operand})"')
        condition, values = sql.SQL("{} is {}").format(ident, sql.SQL(operand)), []
    elif op == "in":
        if not (operand.startswith("(") and operand.endswith(")")):
            raise RestError(400, "PGRST100", f'"failed to parse filter (in.{operand})"')
        items = _in_items(operand[1:-1])
        condition = sql.SQL("{} = any(%s::{}[])").format(ident, sql.SQL(kind))
        values = [items]
    else:
        raise unsupported(f"the filter operator {op!r}")
    if negate:
        condition = sql.SQL("not ({})").format(condition)
    return condition, values


def _in_items(text: str) -> list[str]:
    """The items of an `in.(...)` list: comma-separated, double-quoted where they hold commas or quotes."""
    items: list[str] = []
    for match in re.finditer(r'\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)', text):
        raw = match.group(1)
        if match.start() == len(text) and not raw:
            break
        items.append(re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw)
    return items


def _prefer(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(","):
        key, eq, value = part.strip().partition("=")
        if not key:
            continue
        if not eq or key not in ("return", "resolution", "missing", "count", "tx", "handling"):
            raise unsupported(f"Prefer: {part.strip()}")
        out[key] = value
    return out


class _Server(ThreadingHTTPServer):
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and went away is the point of some tests


class _Handler(BaseHTTPRequestHandler):
    rest: PostgrestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        recorded = Recorded(self.command, parts.path, parts.query, headers, body)
        fault = self.rest._record(recorded)
        if fault is not None:
            recorded.status = fault.status
            self._fault(fault)
            return
        try:
            status, out_headers, payload = self.rest.handle(self.command, parts.path, parts.query, headers, raw)
        except RestError as err:
            status, out_headers = err.status, {"Content-Type": "application/json; charset=utf-8"}
            payload = json.dumps(err.body).encode()
        recorded.status, recorded.answer = status, json.loads(payload) if payload else None
        self._send(status, out_headers, payload)

    def _fault(self, fault: Fault) -> None:
        if fault.hang:
            self.rest.release.wait()
            return
        if fault.delay_s:
            self.rest.release.wait(fault.delay_s)
        payload = fault.body if isinstance(fault.body, bytes | str) else json.dumps(fault.body)
        data = payload.encode() if isinstance(payload, str) else payload
        self._send(fault.status, {"Content-Type": fault.content_type}, data)

    def _send(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815 - http.server naming
