-- Trust only this app's tokens (issue 16): every policy and every security-definer function now asks who
-- minted the claims, not only whose they are.
--
-- Why: on Supabase the Data API accepts any token Supabase trusts (this app's, through third-party auth;
-- Supabase Auth's own). If policies checked only `sub`, a user could take a token Supabase trusts for them
-- and the public publishable key and write around the app: skip rate limits and length checks, set any
-- status, plant "assistant" messages in the history reviewers audit. So the app verifies Clerk's (or the
-- local issuer's) tokens itself, never forwards them, and hands the database claims of its own making
-- (services/app_tokens.py), in three narrow shapes told apart by `chat_scope`:
--   * 'user'    : iss = the app, sub = the verified user, roles copied from the verified token;
--   * 'signin'  : iss = the app, no sub; pre-sign-in work (sessions, throttling, the sign-in audit entries,
--                 API-key lookup), accepted only by the public.signin_* functions and public.api_key_owner;
--   * 'sweeper' : iss = the app, no sub; accepted only by public.sweep_stale_replies.
-- The Postgres backend puts the same claims in request.jwt.claims (PostgREST's pattern), so these rules
-- hold on both backends. It still switches to the NOLOGIN roles chat_signin / chat_sweeper for
-- pre-sign-in work and the sweep, as defence in depth: those roles can now do nothing but call those
-- functions (their table policies and grants are dropped below).
--
-- How the database knows the app's issuer: chat_private.app_issuer() returns a fixed, documented string,
-- 'streamlit-chat' (services/app_tokens.py APP_ISSUER; a test checks they agree). Supabase tells tokens
-- apart by signature (the app's key is registered for third-party auth); the issuer tells the app's
-- tokens from Supabase Auth's own, whose iss is the project's auth URL.
--
-- Tokens of any other issuer (Supabase Auth's, or a Clerk token if someone registered Clerk as a
-- provider) get NOTHING, not even reads of their owner's rows. A user holding such a token could
-- otherwise read around the app: page through history without the app's audit or rate limits, and read
-- content the app may withhold later (a reviewer-only column, a redaction). Nothing is the safer default,
-- and the app never needs such a token.
--
-- Performance: the policies call chat_private.user_sub() inside `(select ...)`, an initplan evaluated
-- once per statement; its result compared with user_id is still an index condition (text `=` is
-- leakproof), so keyset paging keeps using (user_id, created_at desc, id desc).
--
-- Part two of this migration: the SQL functions both backends call (paging, search, usage, rate-limit
-- counting, deletes, the message tree, sign-in work). Invoker functions wherever row-level security can
-- decide; definer functions only for the sign-in work (which has no user to scope rows by), the sweep,
-- the key lookup and the search (index use, 20261126000300), each checking the token's scope itself.
-- Parameters are named p_* so that PL/pgSQL never confuses them with columns; PostgREST's rpc takes the
-- same names as JSON keys.
--
-- Privileges on Supabase: this migration creates no role and needs none beyond what Supabase's
-- `postgres` role has (BYPASSRLS for the definer functions' owner, as the earlier migrations already
-- require). tests/test_supabase_roles.py applies every migration as such a role.

do $$
begin
  if not exists (
    select 1 from pg_catalog.pg_roles where rolname = current_user and (rolsuper or rolbypassrls)
  ) then
    raise exception 'the sign-in functions must be owned by a role that bypasses row-level security (superuser or BYPASSRLS; on Supabase run migrations as postgres), not %', current_user;
  end if;
end
$$;

-- --- who is calling ----------------------------------------------------------------------------------

-- Not exposed through the Data API (Supabase exposes `public` unless told otherwise); the policies of
-- `authenticated` call these functions, so that role needs usage and execute.
create schema if not exists chat_private;
revoke all on schema chat_private from public;
grant usage on schema chat_private to authenticated, chat_signin, chat_sweeper;

create function chat_private.app_issuer() returns pg_catalog.text
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$ select 'streamlit-chat'::pg_catalog.text $$;

-- The caller's user id if the claims are this app's user token; null for anything else (no token,
-- another issuer, a sign-in or sweeper token). Every own-rows policy compares user_id with this.
create function chat_private.user_sub() returns pg_catalog.text
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select case
    when c ->> 'iss' = chat_private.app_issuer() and c ->> 'chat_scope' = 'user' then nullif(c ->> 'sub', '')
  end
  from (select auth.jwt() as c) claims
$$;

-- The scope of this app's token ('user', 'signin', 'sweeper'); null for anyone else's.
create function chat_private.token_scope() returns pg_catalog.text
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select case when c ->> 'iss' = chat_private.app_issuer() then c ->> 'chat_scope' end
  from (select auth.jwt() as c) claims
$$;

-- Whether this app's user token carries an app role ('reviewer', 'admin'). The app copies the roles of
-- the verified Clerk or local token (`roles` or `metadata.roles`) into the minted token's `roles`, a list;
-- in lax mode the jsonpath comparison unwraps it, so a single string matches too and {"reviewer": true}
-- does not.
create function chat_private.has_app_role(p_role pg_catalog.text) returns pg_catalog.bool
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select chat_private.user_sub() is not null
    and coalesce(
      pg_catalog.jsonb_path_exists(auth.jwt(), '$ ? (@.roles == $r)', pg_catalog.jsonb_build_object('r', p_role)),
      false
    )
$$;

revoke all on function chat_private.app_issuer(), chat_private.user_sub(), chat_private.token_scope(),
  chat_private.has_app_role(pg_catalog.text) from public;
grant execute on function chat_private.app_issuer(), chat_private.user_sub(), chat_private.token_scope(),
  chat_private.has_app_role(pg_catalog.text) to authenticated, chat_signin, chat_sweeper;

-- --- policies: the same rules, for this app's user tokens only -----------------------------------------

alter policy conversations_select_own on public.conversations using ((select chat_private.user_sub()) = user_id);
alter policy conversations_insert_own on public.conversations with check ((select chat_private.user_sub()) = user_id);
alter policy conversations_update_own on public.conversations
  using ((select chat_private.user_sub()) = user_id) with check ((select chat_private.user_sub()) = user_id);
alter policy conversations_delete_own on public.conversations using ((select chat_private.user_sub()) = user_id);
alter policy conversations_select_reviewer on public.conversations
  using ((select chat_private.has_app_role('reviewer')));

alter policy messages_select_own on public.messages using ((select chat_private.user_sub()) = user_id);
alter policy messages_insert_own on public.messages with check (
  (select chat_private.user_sub()) = user_id
  and exists (
    select 1 from public.conversations c
    where c.id = conversation_id and c.user_id = (select chat_private.user_sub())
  )
);
alter policy messages_update_own on public.messages
  using ((select chat_private.user_sub()) = user_id) with check ((select chat_private.user_sub()) = user_id);
alter policy messages_delete_own on public.messages using ((select chat_private.user_sub()) = user_id);
alter policy messages_select_reviewer on public.messages using ((select chat_private.has_app_role('reviewer')));

alter policy rate_limits_select_own on public.rate_limits using ((select chat_private.user_sub()) = user_id);
alter policy rate_limits_insert_own on public.rate_limits with check ((select chat_private.user_sub()) = user_id);
alter policy rate_limits_update_own on public.rate_limits
  using ((select chat_private.user_sub()) = user_id) with check ((select chat_private.user_sub()) = user_id);

alter policy profiles_select_own on public.profiles using ((select chat_private.user_sub()) = user_id);
alter policy profiles_select_reviewer on public.profiles using ((select chat_private.has_app_role('reviewer')));
alter policy profiles_insert_own on public.profiles with check ((select chat_private.user_sub()) = user_id);
alter policy profiles_update_own on public.profiles
  using ((select chat_private.user_sub()) = user_id) with check ((select chat_private.user_sub()) = user_id);
alter policy profiles_delete_own on public.profiles using ((select chat_private.user_sub()) = user_id);

alter policy api_keys_select_own on public.api_keys using ((select chat_private.user_sub()) = user_id);
alter policy api_keys_insert_own on public.api_keys with check ((select chat_private.user_sub()) = user_id);
alter policy api_keys_update_own on public.api_keys
  using ((select chat_private.user_sub()) = user_id) with check ((select chat_private.user_sub()) = user_id);
alter policy api_keys_delete_own on public.api_keys using ((select chat_private.user_sub()) = user_id);

alter policy sessions_select_own on public.sessions using ((select chat_private.user_sub()) = user_id);
alter policy sessions_update_own on public.sessions
  using ((select chat_private.user_sub()) = user_id) with check ((select chat_private.user_sub()) = user_id);
alter policy audit_log_insert_own on public.audit_log with check ((select chat_private.user_sub()) = actor_id);
alter policy audit_log_select_admin on public.audit_log using ((select chat_private.has_app_role('admin')));

-- Pre-sign-in work now goes only through the definer functions below, which check the sign-in scope; the
-- role keeps no direct way into the tables (a token-less `set role chat_signin` reads and writes nothing).
drop policy sessions_signin_all on public.sessions;
drop policy signin_attempts_service on public.signin_attempts;
drop policy audit_log_insert_signin on public.audit_log;
revoke all on public.sessions, public.signin_attempts, public.audit_log from chat_signin;

-- --- refusals ------------------------------------------------------------------------------------------

-- One message for every function that is handed the wrong kind of token: SQLSTATE 42501 (PostgREST: 403).
create function chat_private.require_scope(p_scope pg_catalog.text, p_function pg_catalog.text) returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
  if chat_private.token_scope() is distinct from p_scope then
    raise exception 'permission denied for function %: it accepts only this app''s % token', p_function, p_scope
      using errcode = '42501';
  end if;
end
$$;
revoke all on function chat_private.require_scope(pg_catalog.text, pg_catalog.text) from public;

-- --- security-definer functions: scope checks ------------------------------------------------------------

-- The key lookup: as in 20261128001000, plus the sign-in scope. Granted to `authenticated` so the
-- Supabase backend can call it through the Data API with its sign-in token; a user's token is refused.
create or replace function public.api_key_owner(key_hash pg_catalog.text)
returns table (state pg_catalog.text, user_id pg_catalog.text, key_id pg_catalog.uuid)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  k public.api_keys%rowtype;
  moment pg_catalog.timestamptz := pg_catalog.now();
begin
  perform chat_private.require_scope('signin', 'api_key_owner');
  if key_hash is null or key_hash !~ '^[0-9a-f]{64}$' then
    return;
  end if;
  select * into k from public.api_keys a where a.secret_hash = key_hash;
  if not found then
    return;
  end if;
  if k.revoked_at is not null then
    return query select 'revoked'::pg_catalog.text, null::pg_catalog.text, null::pg_catalog.uuid;
    return;
  end if;
  if k.expires_at is not null and k.expires_at <= moment then
    return query select 'expired'::pg_catalog.text, null::pg_catalog.text, null::pg_catalog.uuid;
    return;
  end if;
  if k.last_used_at is null or k.last_used_at < moment - '1 minute'::pg_catalog.interval then
    update public.api_keys a set last_used_at = moment where a.id = k.id;
  end if;
  return query select 'live'::pg_catalog.text, k.user_id, k.id;
end;
$fn$;
grant execute on function public.api_key_owner(pg_catalog.text) to authenticated;

create or replace function public.sweep_stale_replies(stale_after_s pg_catalog.int4)
returns pg_catalog.int4
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  swept pg_catalog.int4;
begin
  perform chat_private.require_scope('sweeper', 'sweep_stale_replies');
  -- A floor the caller cannot go under: live replies refresh their heartbeat well within 5 seconds.
  if stale_after_s is null or stale_after_s < 5 then
    raise exception 'stale_after_s must be at least 5 seconds' using errcode = '22023';
  end if;
  update public.messages
     set status = 'interrupted'
   where status = 'streaming'
     and heartbeat_at < pg_catalog.now() - pg_catalog.make_interval(secs => stale_after_s);
  get diagnostics swept = row_count;
  return swept;
end;
$fn$;
grant execute on function public.sweep_stale_replies(pg_catalog.int4) to authenticated;

-- The search (20261126000300, 20261128000000): the caller and the reviewer test now come from the same
-- functions as the policies, so a token of another issuer finds nothing here either.
create or replace function public.search_messages(
  search_query pg_catalog.text,
  page_size pg_catalog.int4,
  cursor_at pg_catalog.timestamptz default null,
  cursor_id pg_catalog.uuid default null,
  newer pg_catalog.bool default false,
  conversation pg_catalog.uuid default null,
  message_role pg_catalog.text default null,
  message_model pg_catalog.text default null,
  message_status pg_catalog.text default null,
  since pg_catalog.timestamptz default null,
  until pg_catalog.timestamptz default null,
  all_users pg_catalog.bool default false
)
returns table (
  id pg_catalog.uuid,
  conversation_id pg_catalog.uuid,
  conversation_title pg_catalog.text,
  user_id pg_catalog.text,
  role pg_catalog.text,
  content pg_catalog.text,
  model pg_catalog.text,
  status pg_catalog.text,
  input_tokens pg_catalog.int4,
  output_tokens pg_catalog.int4,
  latency_ms pg_catalog.int4,
  created_at pg_catalog.timestamptz
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  uid pg_catalog.text := chat_private.user_sub();
  everyone pg_catalog.bool;
  tsq pg_catalog.tsquery;
  scope pg_catalog.text[] := '{}';
  filters pg_catalog.text[];
  dir pg_catalog.text := case when newer then 'asc' else 'desc' end;
  budget pg_catalog.int4;
  scanned pg_catalog.int4;
  hits pg_catalog.uuid[];
  columns constant pg_catalog.text := 'm.id, m.conversation_id, c.title, m.user_id, m.role, m.content, m.model, m.status,'
    ' m.input_tokens, m.output_tokens, m.latency_ms, m.created_at';
begin
  if uid is null then
    return;  -- no verified caller of this app: nothing, like the policies
  end if;
  if page_size is null or page_size < 1 or page_size > 1000 then
    raise exception 'page_size must be between 1 and 1000' using errcode = '22023';
  end if;
  if pg_catalog.length(coalesce(search_query, '')) > 1000 then
    raise exception 'search_query must be at most 1000 characters' using errcode = '22023';
  end if;
  tsq := pg_catalog.websearch_to_tsquery('pg_catalog.simple'::pg_catalog.regconfig, coalesce(search_query, ''));
  if pg_catalog.numnode(tsq) = 0 then
    return;  -- no searchable word ("!!!", "or"): matches nothing, as `search @@ ''` does
  end if;
  -- Same test as the reviewer select policies; anyone else is limited to their own rows.
  everyone := coalesce(all_users, false) and chat_private.has_app_role('reviewer');

  -- Conditions on index columns (scope of the walk) and the rest (tested per row). Fixed SQL text only;
  -- every value is a parameter: $1 tsq, $2 uid, $3 conversation, $4 role, $5 model, $6 status,
  -- $7 since, $8 until, $9 cursor_at, $10 cursor_id.
  if not everyone then
    scope := scope || 'm.user_id = $2'::pg_catalog.text;
  end if;
  if conversation is not null then
    scope := scope || 'm.conversation_id = $3'::pg_catalog.text;
  end if;
  if since is not null then
    scope := scope || 'm.created_at >= $7'::pg_catalog.text;
  end if;
  if until is not null then
    scope := scope || 'm.created_at < $8'::pg_catalog.text;
  end if;
  if cursor_at is not null and cursor_id is not null then
    scope := scope || (case when newer then '(m.created_at, m.id) > ($9, $10)' else '(m.created_at, m.id) < ($9, $10)' end);
  end if;
  filters := array['m.search @@ $1'];
  if message_role is not null then
    filters := filters || 'm.role = $4'::pg_catalog.text;
  end if;
  if message_model is not null then
    filters := filters || 'm.model = $5'::pg_catalog.text;
  end if;
  if message_status is not null then
    filters := filters || 'm.status = $6'::pg_catalog.text;
  end if;
  if pg_catalog.cardinality(scope) = 0 then
    scope := array['true'];
  end if;

  -- 1. walk (see 20261126000300 for the budget).
  budget := greatest(3000, (3000 * pg_catalog.sqrt(page_size / 21.0::pg_catalog.numeric))::pg_catalog.int4);
  execute pg_catalog.format(
    'select coalesce(pg_catalog.array_agg(t.id order by t.created_at %1$s, t.id %1$s), ''{}''::pg_catalog.uuid[]) from ('
    '  select m.id, m.created_at from ('
    '    select m.* from public.messages m where %3$s order by m.created_at %1$s, m.id %1$s limit %4$s'
    '  ) m where %2$s order by m.created_at %1$s, m.id %1$s limit %5$s) t',
    dir, pg_catalog.array_to_string(filters, ' and '),
    pg_catalog.array_to_string(scope, ' and '), budget, page_size)
    into hits
    using tsq, uid, conversation, message_role, message_model, message_status, since, until, cursor_at, cursor_id;

  if pg_catalog.cardinality(hits) < page_size then
    execute pg_catalog.format(
      'select pg_catalog.count(*)::pg_catalog.int4 from (select 1 from public.messages m where %2$s'
      ' order by m.created_at %1$s, m.id %1$s limit %3$s) s',
      dir, pg_catalog.array_to_string(scope, ' and '), budget)
      into scanned
      using tsq, uid, conversation, message_role, message_model, message_status, since, until, cursor_at, cursor_id;
  end if;

  if pg_catalog.cardinality(hits) >= page_size or scanned < budget then
    return query execute pg_catalog.format(
      'select %2$s from public.messages m join public.conversations c on c.id = m.conversation_id'
      ' where m.id = any($1) order by m.created_at %1$s, m.id %1$s',
      dir, columns)
      using hits;
    return;
  end if;

  -- 2. index: every match in the scope from the GIN index, then one page of them in keyset order.
  return query execute pg_catalog.format(
    'with found as materialized (select m.id, m.created_at from public.messages m where %2$s and %3$s)'
    ' select %4$s from (select f.id from found f order by f.created_at %1$s, f.id %1$s limit %5$s) p'
    ' join public.messages m on m.id = p.id join public.conversations c on c.id = m.conversation_id'
    ' order by m.created_at %1$s, m.id %1$s',
    dir, pg_catalog.array_to_string(scope, ' and '), pg_catalog.array_to_string(filters, ' and '), columns,
    page_size)
    using tsq, uid, conversation, message_role, message_model, message_status, since, until, cursor_at, cursor_id;
end;
$fn$;
