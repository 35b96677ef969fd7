-- History's feedback (issue 15) inside the SQL functions both backends call (20261128001710): the
-- feedback filter, each row's feedback and comment, and the thumbs per day and model of the usage chart.
--
-- `create or replace` cannot change a function's arguments or its result columns, so each is dropped and
-- created again with the settings, grants and revokes the one it replaces had (tests/test_store_functions.py
-- pins them): history_page and usage_by_day run as the caller (row-level security decides, on feedback as
-- on messages), search_messages as its owner with the caller's scope applied by hand (20261126000300,
-- 20261128001700).
--
-- The feedback filter ('up', 'down', 'comment', 'none'; null for all):
--   * up, down, comment: history_page walks a feedback index (20261128001900) from the cursor, each row
--     joined to its message by primary key. The keyset is the feedback row's copy of its reply's
--     (created_at, id), which the write policies keep exact, so the order and the cursors are the
--     messages' own. Without all-users the owner is said on the feedback side too (its owner is always the
--     message's): the policies' OR of "own" and "reviewer" cannot pick the (user_id, rating, ...) index,
--     and without it the walk read all 200,000 of a heavy user's messages for 2,000 thumbs (bench/history.py).
--   * none: the replies without feedback, an anti-join by primary key on the newest-first messages walk
--     (most replies have none, so a page fills quickly).
--   * In search_messages it is one more per-row condition beside role, model and status, tested on the
--     rows the search walk (or the GIN index) finds.
-- Unknown values are refused (22023), like a bad page size.

do $$
begin
  if not exists (
    select 1 from pg_catalog.pg_roles where rolname = current_user and (rolsuper or rolbypassrls)
  ) then
    raise exception 'search_messages must be owned by a role that bypasses row-level security (superuser or BYPASSRLS; on Supabase run migrations as postgres), not %', current_user;
  end if;
end
$$;

drop function public.history_page(
  pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.uuid, pg_catalog.bool, pg_catalog.uuid, pg_catalog.text,
  pg_catalog.text, pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.bool
);
drop function public.search_messages(
  pg_catalog.text, pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.uuid, pg_catalog.bool, pg_catalog.uuid,
  pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.bool
);
drop function public.usage_by_day(pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.text, pg_catalog.bool);

create function chat_private.check_feedback_filter(p_feedback pg_catalog.text) returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_feedback is not null and p_feedback <> all (array['up', 'down', 'comment', 'none']) then
    raise exception 'feedback filter must be up, down, comment or none' using errcode = '22023';
  end if;
end
$$;
revoke all on function chat_private.check_feedback_filter(pg_catalog.text) from public;
grant execute on function chat_private.check_feedback_filter(pg_catalog.text) to authenticated;

-- One page of messages with their conversation's title and their feedback, filtered, keyset on
-- (created_at, id): newest first, or with p_newer oldest first from the cursor. Only the caller's rows
-- unless p_all_users (then whatever the reviewer policies let them see).
create function public.history_page(
  p_page_size pg_catalog.int4,
  p_cursor_at pg_catalog.timestamptz default null,
  p_cursor_id pg_catalog.uuid default null,
  p_newer pg_catalog.bool default false,
  p_conversation pg_catalog.uuid default null,
  p_role pg_catalog.text default null,
  p_model pg_catalog.text default null,
  p_status pg_catalog.text default null,
  p_since pg_catalog.timestamptz default null,
  p_until pg_catalog.timestamptz default null,
  p_all_users pg_catalog.bool default false,
  p_feedback pg_catalog.text default null
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
  created_at pg_catalog.timestamptz,
  parent_id pg_catalog.uuid,
  feedback pg_catalog.text,
  feedback_comment pg_catalog.text
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  conditions pg_catalog.text[] := '{}';
  dir pg_catalog.text := case when coalesce(p_newer, false) then 'asc' else 'desc' end;
  walk_feedback pg_catalog.bool := coalesce(p_feedback in ('up', 'down', 'comment'), false);
  -- The keyset columns: the feedback row's copy of its reply's position when walking a feedback index.
  at_col pg_catalog.text := case when walk_feedback then 'f.message_created_at' else 'm.created_at' end;
  id_col pg_catalog.text := case when walk_feedback then 'f.message_id' else 'm.id' end;
  source pg_catalog.text;
begin
  perform chat_private.check_page_size(p_page_size);
  perform chat_private.check_feedback_filter(p_feedback);
  -- $1 uid, $2 conversation, $3 role, $4 model, $5 status, $6 since, $7 until, $8 cursor_at, $9 cursor_id
  if not coalesce(p_all_users, false) then
    conditions := conditions || 'm.user_id = $1'::pg_catalog.text;
    if walk_feedback then
      conditions := conditions || 'f.user_id = $1'::pg_catalog.text;
    end if;
  end if;
  if p_conversation is not null then
    conditions := conditions || 'm.conversation_id = $2'::pg_catalog.text;
  end if;
  if p_role is not null then
    conditions := conditions || 'm.role = $3'::pg_catalog.text;
  end if;
  if p_model is not null then
    conditions := conditions || 'm.model = $4'::pg_catalog.text;
  end if;
  if p_status is not null then
    conditions := conditions || 'm.status = $5'::pg_catalog.text;
  end if;
  if p_since is not null then
    conditions := conditions || (at_col || ' >= $6');
  end if;
  if p_until is not null then
    conditions := conditions || (at_col || ' < $7');
  end if;
  if p_cursor_at is not null and p_cursor_id is not null then
    conditions := conditions || pg_catalog.format('(%s, %s) %s ($8, $9)', at_col, id_col,
      case when coalesce(p_newer, false) then '>' else '<' end);
  end if;
  if p_feedback = 'up' then
    conditions := conditions || 'f.rating = 1'::pg_catalog.text;
  elsif p_feedback = 'down' then
    conditions := conditions || 'f.rating = -1'::pg_catalog.text;
  elsif p_feedback = 'comment' then
    conditions := conditions || 'f.comment is not null'::pg_catalog.text;
  elsif p_feedback = 'none' then
    conditions := conditions || 'f.message_id is null and m.role = ''assistant'''::pg_catalog.text;
  end if;
  if pg_catalog.cardinality(conditions) = 0 then
    conditions := array['true'];
  end if;
  source := case when walk_feedback
    then 'public.feedback f join public.messages m on m.id = f.message_id'
    else 'public.messages m left join public.feedback f on f.message_id = m.id' end;
  return query execute pg_catalog.format(
    'select m.id, m.conversation_id, c.title, m.user_id, m.role, m.content, m.model, m.status,'
    ' m.input_tokens, m.output_tokens, m.latency_ms, m.created_at, m.parent_id,'
    ' case f.rating when 1 then ''up'' when -1 then ''down'' end, f.comment'
    ' from %4$s join public.conversations c on c.id = m.conversation_id'
    ' where %2$s order by %5$s %1$s, %6$s %1$s limit %3$s',
    dir, pg_catalog.array_to_string(conditions, ' and '), p_page_size, source, at_col, id_col)
    using chat_private.user_sub(), p_conversation, p_role, p_model, p_status, p_since, p_until,
      p_cursor_at, p_cursor_id;
end
$$;

-- Messages and tokens per day (in p_time_zone) and model, for p_since <= created_at < p_until, with the
-- thumbs up and down given on those replies; ordered by day, then model. The thumbs are counted from the
-- feedback side (a few per hundred replies, found by the owner index and the row's copy of its reply's
-- created_at), each row's model read by primary key; `offset 0` keeps that lookup a per-row index probe
-- and `materialized` computes the counts once rather than per day and model.
create function public.usage_by_day(
  p_since pg_catalog.timestamptz,
  p_until pg_catalog.timestamptz,
  p_time_zone pg_catalog.text,
  p_all_users pg_catalog.bool default false
)
returns table (
  day pg_catalog.date,
  model pg_catalog.text,
  messages pg_catalog.int4,
  input_tokens pg_catalog.int8,
  output_tokens pg_catalog.int8,
  thumbs_up pg_catalog.int4,
  thumbs_down pg_catalog.int4
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
#variable_conflict use_column
declare
  uid pg_catalog.text := chat_private.user_sub();
  everyone pg_catalog.bool := coalesce(p_all_users, false);
begin
  return query
    with counts as (
      select (m.created_at at time zone p_time_zone)::pg_catalog.date as day, m.model as model,
        pg_catalog.count(*)::pg_catalog.int4 as messages,
        coalesce(pg_catalog.sum(m.input_tokens), 0)::pg_catalog.int8 as input_tokens,
        coalesce(pg_catalog.sum(m.output_tokens), 0)::pg_catalog.int8 as output_tokens
      from public.messages m
      where (everyone or m.user_id = uid) and m.created_at >= p_since and m.created_at < p_until
      group by 1, 2
    ),
    thumbs as materialized (
      select (f.message_created_at at time zone p_time_zone)::pg_catalog.date as day, r.model as model,
        (pg_catalog.count(*) filter (where f.rating = 1))::pg_catalog.int4 as up,
        (pg_catalog.count(*) filter (where f.rating = -1))::pg_catalog.int4 as down
      from public.feedback f
      cross join lateral (select m.model from public.messages m where m.id = f.message_id offset 0) r
      where (everyone or f.user_id = uid) and f.message_created_at >= p_since and f.message_created_at < p_until
      group by 1, 2
    )
    select c.day, c.model, c.messages, c.input_tokens, c.output_tokens,
      coalesce(t.up, 0)::pg_catalog.int4, coalesce(t.down, 0)::pg_catalog.int4
    from counts c left join thumbs t on t.day = c.day and t.model = c.model
    order by 1, 2;
end
$$;

-- The search (20261126000300, 20261128001700), with the feedback filter and columns. Definer: the rows are
-- limited to the caller's own, or everyone's for a reviewer asking for all users; the feedback it reads is
-- on those rows only, and a message's feedback is always its owner's (the write policies), so it shows
-- exactly what the feedback policies would.
create function public.search_messages(
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
  all_users pg_catalog.bool default false,
  feedback_filter pg_catalog.text default null
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
  created_at pg_catalog.timestamptz,
  feedback pg_catalog.text,
  feedback_comment pg_catalog.text
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
    ' m.input_tokens, m.output_tokens, m.latency_ms, m.created_at,'
    ' case f.rating when 1 then ''up'' when -1 then ''down'' end, f.comment';
  rated constant pg_catalog.text := 'exists (select 1 from public.feedback f where f.message_id = m.id and %s)';
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
  perform chat_private.check_feedback_filter(feedback_filter);
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
  if feedback_filter = 'up' then
    filters := filters || pg_catalog.format(rated, 'f.rating = 1');
  elsif feedback_filter = 'down' then
    filters := filters || pg_catalog.format(rated, 'f.rating = -1');
  elsif feedback_filter = 'comment' then
    filters := filters || pg_catalog.format(rated, 'f.comment is not null');
  elsif feedback_filter = 'none' then
    filters := filters || ('m.role = ''assistant'' and not ' || pg_catalog.format(rated, 'true'));
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
      ' left join public.feedback f on f.message_id = m.id'
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
    ' left join public.feedback f on f.message_id = m.id'
    ' order by m.created_at %1$s, m.id %1$s',
    dir, pg_catalog.array_to_string(scope, ' and '), pg_catalog.array_to_string(filters, ' and '), columns,
    page_size)
    using tsq, uid, conversation, message_role, message_model, message_status, since, until, cursor_at, cursor_id;
end;
$fn$;

revoke all on function public.history_page(
  pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.uuid, pg_catalog.bool, pg_catalog.uuid, pg_catalog.text,
  pg_catalog.text, pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.bool, pg_catalog.text
) from public, anon;
grant execute on function public.history_page(
  pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.uuid, pg_catalog.bool, pg_catalog.uuid, pg_catalog.text,
  pg_catalog.text, pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.bool, pg_catalog.text
) to authenticated;
revoke all on function public.usage_by_day(pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.text, pg_catalog.bool)
  from public, anon;
grant execute on function public.usage_by_day(pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.text, pg_catalog.bool)
  to authenticated;
revoke all on function public.search_messages(
  pg_catalog.text, pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.uuid, pg_catalog.bool, pg_catalog.uuid,
  pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.bool,
  pg_catalog.text
) from public, anon;
grant execute on function public.search_messages(
  pg_catalog.text, pg_catalog.int4, pg_catalog.timestamptz, pg_catalog.uuid, pg_catalog.bool, pg_catalog.uuid,
  pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.bool,
  pg_catalog.text
) to authenticated;
