-- Functions that cannot be hijacked through the caller's temporary schema (issue 9, finding 3).
--
-- search_messages is SECURITY DEFINER: it runs as its owner, a role that bypasses row-level security
-- (the superuser on the embedded database). It was created with `search_path = ''`, but Postgres still
-- looks up relations and *types* in the session's pg_temp first unless pg_temp is listed explicitly.
-- Any session holding the app's credentials can create temporary objects (PUBLIC has TEMPORARY on a
-- new database), so it could create a domain `pg_temp.text` whose check calls its own function, and
-- the search function would run that function as its owner (reproduced; see
-- tests/test_search_definer_hijack.py). Revoking TEMPORARY does not help while PUBLIC holds it, and on
-- Supabase it would touch every role, so the fix is in the function itself:
--   * `search_path = pg_catalog, pg_temp`: pg_catalog first, pg_temp last, so a temporary object can
--     never shadow a built-in name (functions and operators are never looked up in pg_temp at all);
--   * every type, function and relation schema-qualified, including inside the dynamic SQL, which
--     runs under the same search_path. auth.jwt() (an invoker SQL function, Supabase's or the local
--     shim's) is parsed under the caller's search_path, so inside this function its `jsonb` resolves
--     to pg_catalog too.
-- `create or replace` keeps the owner, the grants and the revokes of migration 20261126000300.
--
-- Reviewed the same way: touch_conversation() (the trigger that keeps the sidebar order) is not a
-- definer function, so it runs as the writer and a temporary object could only affect the writer's own
-- session; it gets the same search_path and qualified names anyway, so no function in public relies on
-- `search_path = ''`. The shim's auth.* functions (services/store/shim.sql, plain Postgres only) are
-- invoker functions that name no relation.

do $$
begin
  if not exists (
    select 1 from pg_catalog.pg_roles where rolname = current_user and (rolsuper or rolbypassrls)
  ) then
    raise exception 'search_messages must be owned by a role that bypasses row-level security (superuser or BYPASSRLS; on Supabase run migrations as postgres), not %', current_user;
  end if;
end
$$;

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
  claims pg_catalog.jsonb := auth.jwt();
  uid pg_catalog.text := claims ->> 'sub';
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
  if uid is null or uid = '' then
    return;  -- no verified caller: nothing, like the policies
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
  everyone := coalesce(all_users, false)
    and coalesce(claims @? '$ ? (@.roles == "reviewer" || @.metadata.roles == "reviewer")'::pg_catalog.jsonpath, false);

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

  -- 1. walk: at most `budget` rows from the keyset position, newest first (oldest first for `newer`),
  -- stopping as soon as a page of matches is found. (Filters cannot be pushed below the inner LIMIT.)
  -- Budget: the walk costs ~2.3 us a row, the index path ~6 us a match (bench, heavy user). The worst
  -- case is a term just too rare for the walk, paying both; 3,000 rows for a page of 20 keeps that
  -- under ~17 ms. For n rows a page, sqrt scaling keeps the two costs balanced.
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
    -- Less than a page: did the walk reach the end of the scope (then that is the answer) or the budget?
    -- Counting the scope's first `budget` rows reads only the btree index.
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

create or replace function public.touch_conversation() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  update public.conversations set updated_at = pg_catalog.now()
  where id = new.conversation_id and updated_at < pg_catalog.now();
  return null;
end;
$$;
