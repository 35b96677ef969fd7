-- Personal API keys (issue 13): a signed-in user creates, lists and revokes their own keys; an HTTP client
-- presents one as a bearer token and acts as that user, under the same row-level security as the user.
--
-- The secret (`sk-chat-` + 32 random bytes) is shown once and never stored: the table keeps its SHA-256.
-- A fast, unsalted hash is right here because the secret is 256 bits of randomness, not a password: there
-- is nothing to guess, so a slow hash would only slow every API request. `prefix` (the first characters,
-- far too few to guess the rest) lets the owner tell their keys apart.
--
-- Users reach their rows through the policies below (owner only, like every table here). A client with a
-- key has no identity yet, so the key is turned into its owner by `public.api_key_owner`, a security
-- definer function that answers only for a live key and reveals nothing else; only `chat_signin` (the
-- pre-sign-in role of 20261128000600, never granted to anon or authenticated) may call it.

create table public.api_keys (
  id uuid primary key default gen_random_uuid(),
  user_id text not null default (auth.jwt() ->> 'sub') check (char_length(user_id) between 1 and 255),
  name text not null check (char_length(name) between 1 and 100),
  prefix text not null check (char_length(prefix) between 1 and 32),
  secret_hash text not null unique check (secret_hash ~ '^[0-9a-f]{64}$'),
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  expires_at timestamptz,
  revoked_at timestamptz
);
create index api_keys_user_idx on public.api_keys (user_id, created_at desc, id desc);

alter table public.api_keys enable row level security;
alter table public.api_keys force row level security;

create policy api_keys_select_own on public.api_keys
  for select to authenticated using ((select auth.jwt() ->> 'sub') = user_id);
create policy api_keys_insert_own on public.api_keys
  for insert to authenticated with check ((select auth.jwt() ->> 'sub') = user_id);
create policy api_keys_update_own on public.api_keys
  for update to authenticated using ((select auth.jwt() ->> 'sub') = user_id)
  with check ((select auth.jwt() ->> 'sub') = user_id);
create policy api_keys_delete_own on public.api_keys
  for delete to authenticated using ((select auth.jwt() ->> 'sub') = user_id);

-- Column grants narrow what the policies allow: the hash, once written, is never read back by anyone but
-- the lookup function, and an owner can rename or revoke a key but not move it, re-point it at another
-- secret, or stretch its expiry.
revoke all on public.api_keys from anon, authenticated, chat_signin;
grant select (id, user_id, name, prefix, created_at, last_used_at, expires_at, revoked_at) on public.api_keys
  to authenticated;
grant insert (user_id, name, prefix, secret_hash, expires_at) on public.api_keys to authenticated;
grant update (name, revoked_at) on public.api_keys to authenticated;
grant delete on public.api_keys to authenticated;

-- A revoked key stays revoked: clearing or moving `revoked_at` (even by the owner, through the Data API) is
-- ignored, so a key revoked because it leaked cannot be brought back by whoever holds a session token.
create function public.api_keys_keep_revoked() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if old.revoked_at is not null then
    new.revoked_at := old.revoked_at;
  end if;
  return new;
end
$$;

create trigger api_keys_keep_revoked before update on public.api_keys
  for each row execute function public.api_keys_keep_revoked();

-- The lookup runs as its owner, who must bypass row-level security (the table forces it, so plain
-- ownership would find nothing): the superuser on the embedded database, `postgres` on Supabase.
do $$
begin
  if not exists (
    select 1 from pg_catalog.pg_roles where rolname = current_user and (rolsuper or rolbypassrls)
  ) then
    raise exception 'api_key_owner must be owned by a role that bypasses row-level security (superuser or BYPASSRLS; on Supabase run migrations as postgres), not %', current_user;
  end if;
end
$$;

-- Given the SHA-256 of a presented secret: one row (state 'live', the owner and the key id) for a live key,
-- one row with state 'revoked' or 'expired' and nothing else for a dead one, no row for an unknown hash.
-- Telling dead from unknown reveals nothing to the caller (it needs the secret to have the hash) and lets
-- the app log why a key was refused. A live key's last use is recorded at most once a minute, so a busy
-- client does not write on every request. search_path lists pg_temp last and every name is qualified
-- (20261128000000: `search_path = ''` still resolves types in pg_temp first).
create function public.api_key_owner(key_hash pg_catalog.text)
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

-- Supabase grants EXECUTE on new public functions to anon and authenticated by default: take it back, so
-- the Data API cannot be used to test hashes; only the app's pre-sign-in role may ask.
revoke all on function public.api_key_owner(pg_catalog.text) from public, anon, authenticated;
grant execute on function public.api_key_owner(pg_catalog.text) to chat_signin;
