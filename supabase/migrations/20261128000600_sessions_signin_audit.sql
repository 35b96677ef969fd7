-- Local accounts (CHAT_AUTH=local): server-side sessions, sign-in throttling and the audit log.
--
-- Everything stays under row-level security (enabled and forced). Work that happens before anyone is
-- signed in (looking a session up by its cookie, counting failed sign-ins) runs as `chat_signin`, a
-- NOLOGIN role the app's login role switches to with `set local role`, just as it switches to
-- `authenticated` for user work. `chat_signin` is never granted to `anon` or `authenticated`, so no
-- browser-held token (and no PostgREST request) can act as it. Other databases: grant it to the app's
-- login role once (`grant chat_signin to <role>`), as the README says; the embedded database does it here.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'chat_signin') then
    create role chat_signin nologin noinherit;
  end if;
  if exists (select 1 from pg_roles where rolname = 'chat_app') then
    grant chat_signin to chat_app;
  end if;
end
$$;

grant usage on schema public to chat_signin;

-- One row per signed-in browser. The cookie holds a random secret; the table holds only its HMAC (keyed
-- with CHAT_COOKIE_KEY, which is not in the database), so reading this table does not let anyone sign in.
-- Times are written by the app from its clock, so tests can move that clock.
create table public.sessions (
  id uuid primary key default gen_random_uuid(),
  user_id text not null check (char_length(user_id) between 1 and 255),
  secret_hash text not null unique check (char_length(secret_hash) = 64),
  created_at timestamptz not null,
  last_seen_at timestamptz not null,
  expires_at timestamptz not null,
  idle_timeout_s integer not null check (idle_timeout_s between 60 and 31536000),
  revoked_at timestamptz,
  user_agent text not null default '' check (char_length(user_agent) <= 300),
  client_address text not null default '' check (char_length(client_address) <= 64)
);
create index sessions_user_idx on public.sessions (user_id, created_at desc);

alter table public.sessions enable row level security;
alter table public.sessions force row level security;

-- A signed-in user sees and revokes only their own sessions (the Account page).
create policy sessions_select_own on public.sessions
  for select to authenticated using ((select auth.jwt() ->> 'sub') = user_id);
create policy sessions_update_own on public.sessions
  for update to authenticated using ((select auth.jwt() ->> 'sub') = user_id)
  with check ((select auth.jwt() ->> 'sub') = user_id);
-- The sign-in service opens sessions after checking a password, and finds them by cookie.
create policy sessions_signin_all on public.sessions
  for all to chat_signin using (true) with check (true);

revoke all on public.sessions from anon, authenticated, chat_signin;
grant select, update (revoked_at) on public.sessions to authenticated;
grant select, insert, update, delete on public.sessions to chat_signin;

-- Failed sign-ins (and sign-ups) counted per key: 'account:<username>', 'address:<ip>', 'signup:<ip>'.
-- Shared by every replica; nobody but the sign-in service can read it.
create table public.signin_attempts (
  key text primary key check (char_length(key) between 1 and 300),
  failures integer not null default 0 check (failures >= 0),
  last_failure_at timestamptz not null,
  blocked_until timestamptz
);

alter table public.signin_attempts enable row level security;
alter table public.signin_attempts force row level security;
create policy signin_attempts_service on public.signin_attempts
  for all to chat_signin using (true) with check (true);
revoke all on public.signin_attempts from anon, authenticated, chat_signin;
grant select, insert, update, delete on public.signin_attempts to chat_signin;

-- What administrators, account holders and the sign-in service did. Append-only: no role is granted
-- update or delete, and triggers refuse them (and truncate) even for the table's owner.
create table public.audit_log (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  actor_id text not null check (char_length(actor_id) between 1 and 255),
  action text not null check (action ~ '^[a-z_.]{1,64}$'),
  target_id text check (char_length(target_id) <= 255),
  detail jsonb not null default '{}'::jsonb check (octet_length(detail::text) <= 4000)
);
create index audit_log_at_idx on public.audit_log (at desc, id desc);

alter table public.audit_log enable row level security;
alter table public.audit_log force row level security;

create policy audit_log_insert_own on public.audit_log
  for insert to authenticated with check ((select auth.jwt() ->> 'sub') = actor_id);
create policy audit_log_select_admin on public.audit_log
  for select to authenticated using ((
    select coalesce(auth.jwt() @? '$ ? (@.roles == "admin" || @.metadata.roles == "admin")', false)
  ));
create policy audit_log_insert_signin on public.audit_log
  for insert to chat_signin with check (actor_id = 'signin');

revoke all on public.audit_log from anon, authenticated, chat_signin;
grant select, insert on public.audit_log to authenticated;
grant insert on public.audit_log to chat_signin;

create function public.audit_log_append_only() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception 'audit_log is append-only' using errcode = '42501';
end
$$;

create trigger audit_log_no_update before update or delete on public.audit_log
  for each row execute function public.audit_log_append_only();
create trigger audit_log_no_truncate before truncate on public.audit_log
  for each statement execute function public.audit_log_append_only();
