-- Replies that nobody is writing any more (issue 17): a heartbeat on messages and a sweep of stale ones.
--
-- A streaming reply is saved about once a second while text arrives, and its `heartbeat_at` is refreshed
-- every few seconds even while the provider is silent (the turn wakes on a timer for that). A reply whose
-- process died (killed, out of memory, a host that vanished) stays `streaming` with an old heartbeat; the
-- sweep finalises such rows as `interrupted`, keeping their text, so none stays `streaming` forever. A
-- live reply in a long provider pause keeps a fresh heartbeat and is never swept.
--
-- Who sweeps, without bypassing row-level security in the app:
--   * Not each user for their own rows when they come back: the orphans of users who never return would
--     stay `streaming` forever (in reviewers' views and exports), and several replicas would each need
--     every user to visit.
--   * Not a policy for a sweeper role: an `update ... where status = 'streaming'` needs SELECT on the
--     rows it filters, so the role could read every user's messages.
--   * So a `security definer` function, public.sweep_stale_replies(age), that does exactly one thing:
--     flip `streaming` rows whose heartbeat is older than `age` seconds (at least 5) to `interrupted`.
--     It takes no row ids, returns only a count, reads and reveals no content. It may be executed only by
--     `chat_sweeper`, a NOLOGIN role that the app's login role switches to with `set local role` (the
--     `chat_signin` pattern of migration 20261128000600); it is revoked from public, anon and
--     authenticated, so no browser-held token or PostgREST request can call it. The app runs it from a
--     background thread at start-up and then periodically (services/sweeper.py). Several replicas
--     sweeping at once is harmless: the update is idempotent. A reply swept while still alive (its
--     process cut off from the database for longer than the limit) is marked `streaming` again by its
--     next write and finalised normally.
--   * search_path = pg_catalog, pg_temp (pg_temp last) and schema-qualified names: `search_path = ''`
--     still looks types up in pg_temp first (migration 20261128000000).
-- Other databases: grant the role to the app's login role once (`grant chat_sweeper to <role>`); without
-- it the app logs that it cannot sweep and carries on. The embedded database does it here.

alter table public.messages add column heartbeat_at timestamptz not null default now();

-- The sweep reads only the few streaming rows, never the whole table.
create index messages_streaming_heartbeat_idx on public.messages (heartbeat_at) where status = 'streaming';

do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'chat_sweeper') then
    create role chat_sweeper nologin noinherit;
  end if;
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'chat_app') then
    grant chat_sweeper to chat_app;
  end if;
  if not exists (
    select 1 from pg_catalog.pg_roles where rolname = current_user and (rolsuper or rolbypassrls)
  ) then
    raise exception 'sweep_stale_replies must be owned by a role that bypasses row-level security (superuser or BYPASSRLS; on Supabase run migrations as postgres), not %', current_user;
  end if;
end
$$;

create function public.sweep_stale_replies(stale_after_s pg_catalog.int4)
returns pg_catalog.int4
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  swept pg_catalog.int4;
begin
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

revoke all on function public.sweep_stale_replies(pg_catalog.int4) from public, anon, authenticated;
grant execute on function public.sweep_stale_replies(pg_catalog.int4) to chat_sweeper;
grant usage on schema public to chat_sweeper;
