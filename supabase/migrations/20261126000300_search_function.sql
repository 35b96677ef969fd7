-- History search that stays fast for rare terms, without weakening row-level security.
--
-- The problem: under RLS Postgres will not use a GIN index for `search @@ tsquery` in the user's own
-- query (ts_match_vq is not LEAKPROOF, so it may not run before the policy quals). Search then walks the
-- user's newest-first index and tests every row: ~1 ms for a common term, ~540 ms for a term in one of
-- 200,000 messages. Even without RLS the planner walks for a rare phrase: it guesses ~1,000 matches for
-- '"message 1234"' (it cannot estimate phrases), so it cannot be trusted to choose.
--
-- The fix: public.search_messages(), a SECURITY DEFINER function that runs as its owner (who bypasses
-- RLS, so the index can be used) and applies the same rules as the policies itself, from the same
-- source: the caller is auth.jwt()->>'sub' (the verified claims the store, or PostgREST, put in
-- request.jwt.claims), and "all users" only when those claims carry the reviewer role (the test of the
-- reviewer select policies). No user id is a parameter. It only reads: STABLE, so Postgres refuses any
-- write inside it, and it returns only the columns the history page shows.
--
-- Two strategies, chosen by measurement rather than by the planner's guess:
--   1. walk: read at most `budget` rows of the scope newest-first from the keyset position (the same
--      index walk as before) and test them; a common term fills the page within a few hundred rows.
--   2. index: if the walk found less than a page and did not reach the end, find every match in the
--      scope through a GIN index (user_id, search), then sort those and take one page. Cost grows with
--      the number of matches, so it is used only after the walk showed the term is rare near here.
-- Worst case is a term just too rare for the walk: measured in bench/history.py.
--
-- Owner: this migration's role, which must bypass RLS: the superuser on the embedded/plain database,
-- `postgres` on Supabase (it has BYPASSRLS; the tables FORCE row level security, so plain ownership
-- would not be enough and the function would silently find nothing; the check below refuses that).
-- Exposure: Supabase grants EXECUTE on new public functions to anon and authenticated by default
-- privileges, hence the explicit revoke. The function is safe to expose to `authenticated` through the
-- Data API (rpc): it shows a caller nothing the select policies would not.

do $$
begin
  if not exists (
    select 1 from pg_catalog.pg_roles where rolname = current_user and (rolsuper or rolbypassrls)
  ) then
    raise exception 'search_messages must be owned by a role that bypasses row-level security (superuser or BYPASSRLS; on Supabase run migrations as postgres), not %', current_user;
  end if;
end
$$;

-- btree_gin lets one GIN index hold user_id and the search vector, so a user's matches are found from
-- the index alone (the GIN scan intersects the user's posting list with the term's). Supabase keeps
-- extensions in the `extensions` schema; the opclass is found by type whatever the schema.
create schema if not exists extensions;
create extension if not exists btree_gin with schema extensions;
create index messages_user_search_idx on public.messages using gin (user_id, search);

create function public.search_messages(
  search_query text,
  page_size integer,
  cursor_at timestamptz default null,
  cursor_id uuid default null,
  newer boolean default false,
  conversation uuid default null,
  message_role text default null,
  message_model text default null,
  message_status text default null,
  since timestamptz default null,
  until timestamptz default null,
  all_users boolean default false
)
returns table (
  id uuid,
  conversation_id uuid,
  conversation_title text,
  user_id text,
  role text,
  content text,
  model text,
  status text,
  input_tokens integer,
  output_tokens integer,
  latency_ms integer,
  created_at timestamptz
)
language plpgsql
stable
security definer
set search_path = ''
as $fn$
declare
  claims jsonb := auth.jwt();
  uid text := claims ->> 'sub';
  everyone boolean;
  tsq tsquery;
  scope text[] := '{}';
  filters text[];
  dir text := case when newer then 'asc' else 'desc' end;
  budget integer;
  scanned integer;
  hits uuid[];
  columns constant text := 'm.id, m.conversation_id, c.title, m.user_id, m.role, m.content, m.model, m.status,'
    ' m.input_tokens, m.output_tokens, m.latency_ms, m.created_at';
begin
  if uid is null or uid = '' then
    return;  -- no verified caller: nothing, like the policies
  end if;
  if page_size is null or page_size < 1 or page_size > 1000 then
    raise exception 'page_size must be between 1 and 1000' using errcode = '22023';
  end if;
  if pg_catalog.length(coalesce(search_query, '')) > 1000 then
    raise exception 'search_query must be at most 1000 characters' using errcode = '22023';
  end if;
  tsq := pg_catalog.websearch_to_tsquery('pg_catalog.simple', coalesce(search_query, ''));
  if pg_catalog.numnode(tsq) = 0 then
    return;  -- no searchable word ("!!!", "or"): matches nothing, as `search @@ ''` does
  end if;
  -- Same test as the reviewer select policies; anyone else is limited to their own rows.
  everyone := coalesce(all_users, false)
    and coalesce(claims @? '$ ? (@.roles == "reviewer" || @.metadata.roles == "reviewer")', false);

  -- Conditions on index columns (scope of the walk) and the rest (tested per row). Fixed SQL text only;
  -- every value is a parameter: $1 tsq, $2 uid, $3 conversation, $4 role, $5 model, $6 status,
  -- $7 since, $8 until, $9 cursor_at, $10 cursor_id.
  if not everyone then
    scope := scope || 'm.user_id = $2'::text;
  end if;
  if conversation is not null then
    scope := scope || 'm.conversation_id = $3'::text;
  end if;
  if since is not null then
    scope := scope || 'm.created_at >= $7'::text;
  end if;
  if until is not null then
    scope := scope || 'm.created_at < $8'::text;
  end if;
  if cursor_at is not null and cursor_id is not null then
    scope := scope || (case when newer then '(m.created_at, m.id) > ($9, $10)' else '(m.created_at, m.id) < ($9, $10)' end);
  end if;
  filters := array['m.search @@ $1'];
  if message_role is not null then
    filters := filters || 'm.role = $4'::text;
  end if;
  if message_model is not null then
    filters := filters || 'm.model = $5'::text;
  end if;
  if message_status is not null then
    filters := filters || 'm.status = $6'::text;
  end if;
  if pg_catalog.cardinality(scope) = 0 then
    scope := array['true'];
  end if;

  -- 1. walk: at most `budget` rows from the keyset position, newest first (oldest first for `newer`),
  -- stopping as soon as a page of matches is found. (Filters cannot be pushed below the inner LIMIT.)
  -- Budget: the walk costs ~2.3 us a row, the index path ~6 us a match (bench, heavy user). The worst
  -- case is a term just too rare for the walk, paying both; 3,000 rows for a page of 20 keeps that
  -- under ~17 ms. For n rows a page, sqrt scaling keeps the two costs balanced.
  budget := greatest(3000, (3000 * pg_catalog.sqrt(page_size / 21.0))::integer);
  execute pg_catalog.format(
    'select coalesce(array_agg(t.id order by t.created_at %1$s, t.id %1$s), ''{}'') from ('
    '  select m.id, m.created_at from ('
    '    select m.* from public.messages m where %3$s order by m.created_at %1$s, m.id %1$s limit %4$s'
    '  ) m where %2$s order by m.created_at %1$s, m.id %1$s limit %5$s) t',
    dir, pg_catalog.array_to_string(filters, ' and '),
    pg_catalog.array_to_string(scope, ' and '), budget, page_size)
    into hits
    using tsq, uid, conversation, message_role, message_model, message_status, since, until, cursor_at, cursor_id;

  if pg_catalog.cardinality(hits) < page_size then
    -- Less than a page: did the walk reach the end of the scope (then that is the answer) or the budget?
    -- Counting the scope's first `budget` rows reads only the btree index.
    execute pg_catalog.format(
      'select count(*)::integer from (select 1 from public.messages m where %2$s'
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

  -- 2. index: every match in the scope from the GIN index (materialized, so the planner cannot turn
  -- it back into the walk), then one page of them in keyset order.
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

revoke all on function public.search_messages(
  text, integer, timestamptz, uuid, boolean, uuid, text, text, text, timestamptz, timestamptz, boolean
) from public, anon;
grant execute on function public.search_messages(
  text, integer, timestamptz, uuid, boolean, uuid, text, text, text, timestamptz, timestamptz, boolean
) to authenticated;
