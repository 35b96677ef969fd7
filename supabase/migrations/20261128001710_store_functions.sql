-- The store's SQL, as functions both backends call (issue 16): services/store/postgres.py with
-- `select ... from public.f(...)`, services/store/supabase.py with `.rpc('f', {...})`. Every query that is
-- more than a single-table insert/select/update by id lives here, so the two backends run the same SQL.
--
-- Invoker functions (row-level security decides, with the caller's own token, 20261128001700):
--   paging (list_conversations, page_messages, recent_messages, history_page), the message tree
--   (add_message, path_messages, message_versions, choose_branch, current_path_ids), usage
--   (usage_by_day, usage_by_user, message_models), rate-limit counting (count_request), deletes
--   (delete_conversation, delete_all_user_data), API-key creation (create_api_key), the profile upserts
--   (save_display_name, save_model_choice), revoke_own_sessions.
-- Definer functions (they bypass row-level security, so each checks the token's scope first): the sign-in
--   work (signin_*), which has no user to scope rows by; the search, the key lookup and the sweep are in
--   20261128001700.
--
-- Keyset paging stays keyset: a missing cursor is the top of the listing, written as the largest
-- possible position ('infinity', the largest uuid) so the row comparison is always an index condition;
-- optional filters that change which index fits are separate statements (PL/pgSQL branches, or dynamic
-- SQL from fixed fragments with every value a parameter), so each plan is the one the old inline query had.
-- Whose rows: the caller's id is read once into a variable (a parameter of the query), and functions that
-- filter by it are planned per call (plan_cache_mode = force_custom_plan), as the inline queries with a
-- literal id were. A cached generic plan, or `user_id = (select ...)`, leaves the planner guessing how many
-- rows the user has: for a user with half the table it picked a bitmap scan and a sort, 45 ms instead of
-- 2 ms for message_models (measured on 200,000 messages).
-- Row order: set-returning functions return their rows in the order stated on each; callers rely on it.
-- Parameters are named p_*: PL/pgSQL would otherwise confuse them with columns, and PostgREST's rpc takes
-- them as JSON keys. Page sizes are bounded here too (1..10001), whatever the caller checked.
-- Grants: Supabase grants EXECUTE on new functions in `public` to anon and authenticated by default, and
-- PUBLIC has it on every new function: each is revoked from public and anon and granted to authenticated
-- (the sign-in functions also to chat_signin, the role the Postgres backend switches to).

create function chat_private.check_page_size(p_page_size pg_catalog.int4) returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_page_size is null or p_page_size < 1 or p_page_size > 10001 then
    raise exception 'page size must be between 1 and 10001' using errcode = '22023';
  end if;
end
$$;
revoke all on function chat_private.check_page_size(pg_catalog.int4) from public;
grant execute on function chat_private.check_page_size(pg_catalog.int4) to authenticated;

-- --- conversations -----------------------------------------------------------------------------------

-- The caller's conversations, most recently active first, from (p_cursor_at, p_cursor_id) exclusive.
-- The title filter is matched literally (LIKE's own metacharacters escaped) and case-insensitively, as
-- a condition on the same index walk (20261128001200).
create function public.list_conversations(
  p_page_size pg_catalog.int4,
  p_cursor_at pg_catalog.timestamptz default null,
  p_cursor_id pg_catalog.uuid default null,
  p_title_filter pg_catalog.text default null
)
returns setof public.conversations
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
declare
  uid pg_catalog.text := chat_private.user_sub();
begin
  perform chat_private.check_page_size(p_page_size);
  return query
    select c.* from public.conversations c
    where c.user_id = uid
      and (c.updated_at, c.id) < (
        coalesce(p_cursor_at, 'infinity'::pg_catalog.timestamptz),
        coalesce(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::pg_catalog.uuid)
      )
      and (
        coalesce(p_title_filter, '') = ''
        or c.title ilike '%' || pg_catalog.regexp_replace(p_title_filter, '([\\%_])', '\\\1', 'g') || '%'
      )
    order by c.updated_at desc, c.id desc
    limit p_page_size;
end
$$;

-- Deletes one of the caller's conversations (its messages go with it); false if there was none to delete.
create function public.delete_conversation(p_conversation pg_catalog.uuid) returns pg_catalog.bool
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  with gone as (delete from public.conversations c where c.id = p_conversation returning 1)
  select pg_catalog.count(*) > 0 from gone
$$;

-- GDPR erasure: every message, conversation and profile of the caller. Returns the messages deleted.
create function public.delete_all_user_data() returns pg_catalog.int4
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  uid pg_catalog.text := chat_private.user_sub();
  deleted pg_catalog.int4;
begin
  if uid is null then
    raise exception 'permission denied for function delete_all_user_data: it accepts only this app''s user token'
      using errcode = '42501';
  end if;
  delete from public.messages m where m.user_id = uid;
  get diagnostics deleted = row_count;
  delete from public.conversations c where c.user_id = uid;
  delete from public.profiles p where p.user_id = uid;
  return deleted;
end
$$;

-- --- messages and the message tree ---------------------------------------------------------------------

-- One message of the caller's, under the conversation's current leaf (p_at_leaf) or under p_parent (null:
-- a new root); the conversation's current leaf becomes the new message. The composite foreign keys refuse
-- a parent of another conversation or user (20261128001100); user_id comes from the token (column default).
create function public.add_message(
  p_conversation pg_catalog.uuid,
  p_role pg_catalog.text,
  p_content pg_catalog.text,
  p_model pg_catalog.text,
  p_status pg_catalog.text default 'complete',
  p_input_tokens pg_catalog.int4 default null,
  p_output_tokens pg_catalog.int4 default null,
  p_latency_ms pg_catalog.int4 default null,
  p_parent pg_catalog.uuid default null,
  p_at_leaf pg_catalog.bool default true
)
returns setof public.messages
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  added public.messages;
begin
  insert into public.messages as m
    (conversation_id, role, content, model, status, input_tokens, output_tokens, latency_ms, parent_id)
  values (
    p_conversation, p_role, p_content, p_model, p_status, p_input_tokens, p_output_tokens, p_latency_ms,
    case when p_at_leaf
      then (select c.current_leaf_id from public.conversations c where c.id = p_conversation)
      else p_parent
    end
  )
  returning m.* into added;
  update public.conversations c set current_leaf_id = added.id where c.id = p_conversation;
  return next added;
end
$$;

-- The last p_page_size messages of a conversation, returned oldest first (what the chat page renders).
create function public.recent_messages(p_conversation pg_catalog.uuid, p_page_size pg_catalog.int4)
returns setof public.messages
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
begin
  perform chat_private.check_page_size(p_page_size);
  return query
    select r.* from (
      select m.* from public.messages m where m.conversation_id = p_conversation
      order by m.created_at desc, m.id desc limit p_page_size
    ) r
    order by r.created_at, r.id;
end
$$;

-- One page of the caller's messages (all, or one conversation's), newest first, keyset on (created_at, id).
create function public.page_messages(
  p_page_size pg_catalog.int4,
  p_cursor_at pg_catalog.timestamptz default null,
  p_cursor_id pg_catalog.uuid default null,
  p_conversation pg_catalog.uuid default null
)
returns setof public.messages
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
declare
  at_ts pg_catalog.timestamptz := coalesce(p_cursor_at, 'infinity'::pg_catalog.timestamptz);
  at_id pg_catalog.uuid := coalesce(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::pg_catalog.uuid);
  uid pg_catalog.text := chat_private.user_sub();
begin
  perform chat_private.check_page_size(p_page_size);
  if p_conversation is null then
    return query
      select m.* from public.messages m
      where m.user_id = uid and (m.created_at, m.id) < (at_ts, at_id)
      order by m.created_at desc, m.id desc limit p_page_size;
  else
    return query
      select m.* from public.messages m
      where m.user_id = uid and m.conversation_id = p_conversation
        and (m.created_at, m.id) < (at_ts, at_id)
      order by m.created_at desc, m.id desc limit p_page_size;
  end if;
end
$$;

-- The path from p_leaf (default: the conversation's current leaf) up to the root, at most p_max_messages
-- nearest the leaf, returned root first. One primary-key lookup per step.
create function public.path_messages(
  p_conversation pg_catalog.uuid,
  p_leaf pg_catalog.uuid default null,
  p_max_messages pg_catalog.int4 default 50
)
returns setof public.messages
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
begin
  perform chat_private.check_page_size(p_max_messages);
  return query
    with recursive path (id, parent_id, depth) as (
      select m.id, m.parent_id, 0 from public.messages m
      where m.conversation_id = p_conversation
        and m.id = coalesce(p_leaf, (select c.current_leaf_id from public.conversations c where c.id = p_conversation))
      union all
      select m.id, m.parent_id, p.depth + 1 from public.messages m join path p on m.id = p.parent_id
    ), chosen as (
      select p.id, p.depth from path p order by p.depth limit p_max_messages
    )
    select m.* from chosen join public.messages m on m.id = chosen.id
    order by chosen.depth desc;
end
$$;

-- For each given message that has siblings (other versions of the same turn): all of them, oldest first.
create function public.message_versions(p_conversation pg_catalog.uuid, p_message_ids pg_catalog.uuid[])
returns table (message_id pg_catalog.uuid, sibling_ids pg_catalog.uuid[])
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  select w.id, pg_catalog.array_agg(s.id order by s.created_at, s.id)
  from public.messages w
  join public.messages s on s.conversation_id = w.conversation_id and s.parent_id is not distinct from w.parent_id
  where w.conversation_id = p_conversation and w.id = any(p_message_ids)
  group by w.id
  having pg_catalog.count(*) > 1
$$;

-- Make the newest message under p_message (the newest leaf of that branch: a reply is always newer than
-- what it answers) the current leaf of its conversation; returns the conversation, or nothing.
create function public.choose_branch(p_message pg_catalog.uuid)
returns setof public.conversations
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  with recursive subtree as (
    select m.id, m.conversation_id, m.created_at from public.messages m where m.id = p_message
    union all
    select m.id, m.conversation_id, m.created_at from public.messages m join subtree s on m.parent_id = s.id
  )
  update public.conversations c set current_leaf_id = leaf.id
  from (select s.id, s.conversation_id from subtree s order by s.created_at desc, s.id desc limit 1) leaf
  where c.id = leaf.conversation_id
  returning c.*
$$;

-- Every message on the current path of each given conversation (the history page marks the others).
create function public.current_path_ids(p_conversation_ids pg_catalog.uuid[])
returns table (message_id pg_catalog.uuid)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
  with recursive path as (
    select m.id, m.parent_id from public.conversations c
    join public.messages m on m.id = c.current_leaf_id where c.id = any(p_conversation_ids)
    union all
    select m.id, m.parent_id from public.messages m join path p on m.id = p.parent_id
  )
  select p.id from path p
$$;

-- --- history page: filtered listing, exports, usage ------------------------------------------------------

-- One page of messages with their conversation's title, filtered, keyset on (created_at, id): newest
-- first, or with p_newer oldest first from the cursor (the way back to newer pages, and the export's
-- batches). Only the caller's rows unless p_all_users (then whatever the reviewer policy lets them see).
-- Dynamic SQL from fixed fragments (every value a parameter), planned per call like the inline query it
-- replaces, so the status filter can still use the partial index of unfinished messages.
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
  p_all_users pg_catalog.bool default false
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
  parent_id pg_catalog.uuid
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
  conditions pg_catalog.text[] := '{}';
  dir pg_catalog.text := case when coalesce(p_newer, false) then 'asc' else 'desc' end;
begin
  perform chat_private.check_page_size(p_page_size);
  -- $1 uid, $2 conversation, $3 role, $4 model, $5 status, $6 since, $7 until, $8 cursor_at, $9 cursor_id
  if not coalesce(p_all_users, false) then
    conditions := conditions || 'm.user_id = $1'::pg_catalog.text;
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
    conditions := conditions || 'm.created_at >= $6'::pg_catalog.text;
  end if;
  if p_until is not null then
    conditions := conditions || 'm.created_at < $7'::pg_catalog.text;
  end if;
  if p_cursor_at is not null and p_cursor_id is not null then
    conditions := conditions || (case when coalesce(p_newer, false)
      then '(m.created_at, m.id) > ($8, $9)' else '(m.created_at, m.id) < ($8, $9)' end);
  end if;
  if pg_catalog.cardinality(conditions) = 0 then
    conditions := array['true'];
  end if;
  return query execute pg_catalog.format(
    'select m.id, m.conversation_id, c.title, m.user_id, m.role, m.content, m.model, m.status,'
    ' m.input_tokens, m.output_tokens, m.latency_ms, m.created_at, m.parent_id'
    ' from public.messages m join public.conversations c on c.id = m.conversation_id'
    ' where %2$s order by m.created_at %1$s, m.id %1$s limit %3$s',
    dir, pg_catalog.array_to_string(conditions, ' and '), p_page_size)
    using chat_private.user_sub(), p_conversation, p_role, p_model, p_status, p_since, p_until,
      p_cursor_at, p_cursor_id;
end
$$;

-- Messages and tokens per day (in p_time_zone) and model, for p_since <= created_at < p_until; ordered by
-- day, then model.
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
  output_tokens pg_catalog.int8
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
#variable_conflict use_column
declare
  uid pg_catalog.text := chat_private.user_sub();
begin
  if coalesce(p_all_users, false) then
    return query
      select (m.created_at at time zone p_time_zone)::pg_catalog.date, m.model, pg_catalog.count(*)::pg_catalog.int4,
        coalesce(pg_catalog.sum(m.input_tokens), 0)::pg_catalog.int8,
        coalesce(pg_catalog.sum(m.output_tokens), 0)::pg_catalog.int8
      from public.messages m where m.created_at >= p_since and m.created_at < p_until
      group by 1, 2 order by 1, 2;
  else
    return query
      select (m.created_at at time zone p_time_zone)::pg_catalog.date, m.model, pg_catalog.count(*)::pg_catalog.int4,
        coalesce(pg_catalog.sum(m.input_tokens), 0)::pg_catalog.int8,
        coalesce(pg_catalog.sum(m.output_tokens), 0)::pg_catalog.int8
      from public.messages m
      where m.user_id = uid and m.created_at >= p_since and m.created_at < p_until
      group by 1, 2 order by 1, 2;
  end if;
end
$$;

-- Messages and tokens per user for p_since <= created_at < p_until; most messages first, then by user id.
create function public.usage_by_user(
  p_since pg_catalog.timestamptz,
  p_until pg_catalog.timestamptz,
  p_all_users pg_catalog.bool default false
)
returns table (
  user_id pg_catalog.text,
  messages pg_catalog.int4,
  input_tokens pg_catalog.int8,
  output_tokens pg_catalog.int8
)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
#variable_conflict use_column
declare
  uid pg_catalog.text := chat_private.user_sub();
begin
  if coalesce(p_all_users, false) then
    return query
      select m.user_id, pg_catalog.count(*)::pg_catalog.int4, coalesce(pg_catalog.sum(m.input_tokens), 0)::pg_catalog.int8,
        coalesce(pg_catalog.sum(m.output_tokens), 0)::pg_catalog.int8
      from public.messages m where m.created_at >= p_since and m.created_at < p_until
      group by 1 order by 2 desc, 1;
  else
    return query
      select m.user_id, pg_catalog.count(*)::pg_catalog.int4, coalesce(pg_catalog.sum(m.input_tokens), 0)::pg_catalog.int8,
        coalesce(pg_catalog.sum(m.output_tokens), 0)::pg_catalog.int8
      from public.messages m
      where m.user_id = uid and m.created_at >= p_since and m.created_at < p_until
      group by 1 order by 2 desc, 1;
  end if;
end
$$;

-- Model names in the most recent 5,000 messages (the model filter's options), sorted. Bounded on purpose:
-- a distinct over a 200k-message history costs ~100 ms per page view.
create function public.message_models(p_all_users pg_catalog.bool default false)
returns table (model pg_catalog.text)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_custom_plan
as $$
#variable_conflict use_column
declare
  uid pg_catalog.text := chat_private.user_sub();
begin
  if coalesce(p_all_users, false) then
    return query
      select distinct r.model from (
        select m.model from public.messages m order by m.created_at desc, m.id desc limit 5000
      ) r order by r.model;
  else
    return query
      select distinct r.model from (
        select m.model from public.messages m where m.user_id = uid
        order by m.created_at desc, m.id desc limit 5000
      ) r order by r.model;
  end if;
end
$$;

-- --- rate-limit counter ----------------------------------------------------------------------------------

-- One fixed window per user, advanced by one upsert: `insert ... on conflict do update` takes the row lock,
-- so concurrent requests from several replicas are each counted exactly once. The user comes from the
-- token (column default); RLS keeps counters private.
create function public.count_request(p_window_s pg_catalog.int4)
returns table (hits pg_catalog.int4, resets_in_s pg_catalog.float8)
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  insert into public.rate_limits as r (window_start, hits) values (pg_catalog.now(), 1)
  on conflict (user_id) do update set
    window_start = case when r.window_start <= pg_catalog.now() - pg_catalog.make_interval(secs => p_window_s)
      then pg_catalog.now() else r.window_start end,
    hits = case when r.window_start <= pg_catalog.now() - pg_catalog.make_interval(secs => p_window_s)
      then 1 else r.hits + 1 end
  returning r.hits,
    pg_catalog.date_part('epoch', r.window_start + pg_catalog.make_interval(secs => p_window_s) - pg_catalog.now())
$$;

-- --- profile and API keys ------------------------------------------------------------------------------

create function public.save_display_name(p_display_name pg_catalog.text) returns void
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  insert into public.profiles as p (display_name) values (p_display_name)
  on conflict (user_id) do update set display_name = excluded.display_name, updated_at = pg_catalog.now()
  where p.display_name is distinct from excluded.display_name
$$;

create function public.save_model_choice(p_model pg_catalog.text) returns void
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  insert into public.profiles as p (last_model) values (p_model)
  on conflict (user_id) do update set last_model = excluded.last_model, updated_at = pg_catalog.now()
  where p.last_model is distinct from excluded.last_model
$$;

-- A new key for the caller, unless they already have p_max_live live ones (then no row). One creation at
-- a time per user (a transaction lock on the user id), so two clicks cannot both pass the count.
create function public.create_api_key(
  p_name pg_catalog.text,
  p_prefix pg_catalog.text,
  p_secret_hash pg_catalog.text,
  p_expires_at pg_catalog.timestamptz,
  p_max_live pg_catalog.int4
)
returns table (
  id pg_catalog.uuid,
  user_id pg_catalog.text,
  name pg_catalog.text,
  prefix pg_catalog.text,
  created_at pg_catalog.timestamptz,
  last_used_at pg_catalog.timestamptz,
  expires_at pg_catalog.timestamptz,
  revoked_at pg_catalog.timestamptz
)
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  live pg_catalog.int8;
begin
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('api_keys:' || coalesce(chat_private.user_sub(), ''), 0));
  select pg_catalog.count(*) into live from public.api_keys a
  where a.revoked_at is null and (a.expires_at is null or a.expires_at > pg_catalog.now());
  if live >= p_max_live then
    return;
  end if;
  return query
    insert into public.api_keys as a (name, prefix, secret_hash, expires_at)
    values (p_name, p_prefix, p_secret_hash, p_expires_at)
    returning a.id, a.user_id, a.name, a.prefix, a.created_at, a.last_used_at, a.expires_at, a.revoked_at;
end
$$;

-- --- sessions: the signed-in user ----------------------------------------------------------------------

-- Revoke every live session of the caller but p_keep (the Account page's "sign out elsewhere").
create function public.revoke_own_sessions(p_now pg_catalog.timestamptz, p_keep pg_catalog.uuid default null)
returns pg_catalog.int4
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
  with revoked as (
    update public.sessions s set revoked_at = p_now
    where s.revoked_at is null and s.id is distinct from p_keep
    returning 1
  )
  select pg_catalog.count(*)::pg_catalog.int4 from revoked
$$;

-- --- sign-in work (definer; the sign-in scope only) ----------------------------------------------------
-- Every time is the caller's (services/sessions.py owns the clock, so tests can move it).

create function public.signin_open_session(
  p_user_id pg_catalog.text,
  p_secret_hash pg_catalog.text,
  p_now pg_catalog.timestamptz,
  p_expires_at pg_catalog.timestamptz,
  p_idle_timeout_s pg_catalog.int4,
  p_user_agent pg_catalog.text,
  p_client_address pg_catalog.text
)
returns table (
  id pg_catalog.uuid,
  user_id pg_catalog.text,
  created_at pg_catalog.timestamptz,
  last_seen_at pg_catalog.timestamptz,
  expires_at pg_catalog.timestamptz,
  idle_timeout_s pg_catalog.int4,
  revoked_at pg_catalog.timestamptz,
  user_agent pg_catalog.text,
  client_address pg_catalog.text
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  perform chat_private.require_scope('signin', 'signin_open_session');
  return query
    insert into public.sessions as s
      (user_id, secret_hash, created_at, last_seen_at, expires_at, idle_timeout_s, user_agent, client_address)
    values (p_user_id, p_secret_hash, p_now, p_now, p_expires_at, p_idle_timeout_s,
      pg_catalog.left(p_user_agent, 300), pg_catalog.left(p_client_address, 64))
    returning s.id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, s.idle_timeout_s, s.revoked_at,
      s.user_agent, s.client_address;
end
$$;

-- The live session with this cookie hash (none if unknown, revoked, past its end or idle too long), its
-- last use moved to p_now at most once per p_touch_after_s (a busy tab does not write on every click).
create function public.signin_find_session(
  p_secret_hash pg_catalog.text,
  p_now pg_catalog.timestamptz,
  p_touch_after_s pg_catalog.float8
)
returns table (
  id pg_catalog.uuid,
  user_id pg_catalog.text,
  created_at pg_catalog.timestamptz,
  last_seen_at pg_catalog.timestamptz,
  expires_at pg_catalog.timestamptz,
  idle_timeout_s pg_catalog.int4,
  revoked_at pg_catalog.timestamptz,
  user_agent pg_catalog.text,
  client_address pg_catalog.text
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  found_session public.sessions;
begin
  perform chat_private.require_scope('signin', 'signin_find_session');
  select * into found_session from public.sessions s where s.secret_hash = p_secret_hash;
  if found_session.id is null or found_session.revoked_at is not null
     or p_now >= least(found_session.expires_at,
                       found_session.last_seen_at + pg_catalog.make_interval(secs => found_session.idle_timeout_s)) then
    return;
  end if;
  if pg_catalog.date_part('epoch', p_now - found_session.last_seen_at) >= p_touch_after_s then
    update public.sessions s set last_seen_at = greatest(s.last_seen_at, p_now) where s.id = found_session.id
    returning s.* into found_session;
  end if;
  return query select found_session.id, found_session.user_id, found_session.created_at,
    found_session.last_seen_at, found_session.expires_at, found_session.idle_timeout_s, found_session.revoked_at,
    found_session.user_agent, found_session.client_address;
end
$$;

-- Revoke the session with this cookie hash (sign-out); returns its user id, null if there was none.
create function public.signin_revoke_session(p_secret_hash pg_catalog.text, p_now pg_catalog.timestamptz)
returns pg_catalog.text
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  owner_id pg_catalog.text;
begin
  perform chat_private.require_scope('signin', 'signin_revoke_session');
  update public.sessions s set revoked_at = coalesce(s.revoked_at, p_now) where s.secret_hash = p_secret_hash
  returning s.user_id into owner_id;
  return owner_id;
end
$$;

-- Revoke every live session of a user but p_keep (password change, disabled account, deletion).
create function public.signin_revoke_user_sessions(
  p_user_id pg_catalog.text,
  p_now pg_catalog.timestamptz,
  p_keep pg_catalog.uuid default null
)
returns pg_catalog.int4
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  revoked pg_catalog.int4;
begin
  perform chat_private.require_scope('signin', 'signin_revoke_user_sessions');
  update public.sessions s set revoked_at = p_now
  where s.user_id = p_user_id and s.revoked_at is null and s.id is distinct from p_keep;
  get diagnostics revoked = row_count;
  return revoked;
end
$$;

-- Forget a deleted account's sessions (their addresses and browsers are its personal data).
create function public.signin_delete_user_sessions(p_user_id pg_catalog.text)
returns pg_catalog.int4
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  deleted pg_catalog.int4;
begin
  perform chat_private.require_scope('signin', 'signin_delete_user_sessions');
  delete from public.sessions s where s.user_id = p_user_id;
  get diagnostics deleted = row_count;
  return deleted;
end
$$;

-- Failure counts of the given throttling keys ('account:<name>', 'address:<ip>', 'signup:<ip>').
create function public.signin_read_attempts(p_keys pg_catalog.text[])
returns table (key pg_catalog.text, failures pg_catalog.int4, blocked_until pg_catalog.timestamptz)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  perform chat_private.require_scope('signin', 'signin_read_attempts');
  if pg_catalog.cardinality(p_keys) > 100 then
    raise exception 'at most 100 keys at once' using errcode = '22023';
  end if;
  return query select a.key, a.failures, a.blocked_until from public.signin_attempts a where a.key = any(p_keys);
end
$$;

-- Count one failure for p_key (a count whose last failure is older than p_window_s starts again at one);
-- returns the new count. One upsert under the row lock: replicas count exactly.
create function public.signin_record_failure(
  p_key pg_catalog.text,
  p_now pg_catalog.timestamptz,
  p_window_s pg_catalog.int4
)
returns pg_catalog.int4
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  counted pg_catalog.int4;
begin
  perform chat_private.require_scope('signin', 'signin_record_failure');
  insert into public.signin_attempts as a (key, failures, last_failure_at) values (p_key, 1, p_now)
  on conflict (key) do update set
    failures = case when a.last_failure_at <= p_now - pg_catalog.make_interval(secs => p_window_s)
      then 1 else a.failures + 1 end,
    last_failure_at = greatest(a.last_failure_at, excluded.last_failure_at)
  returning a.failures into counted;
  return counted;
end
$$;

-- Block p_key until p_blocked_until (null: not blocked); the app's policy decides how long from the count.
create function public.signin_block(p_key pg_catalog.text, p_blocked_until pg_catalog.timestamptz)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform chat_private.require_scope('signin', 'signin_block');
  update public.signin_attempts a set blocked_until = p_blocked_until where a.key = p_key;
end
$$;

create function public.signin_clear_attempts(p_key pg_catalog.text)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform chat_private.require_scope('signin', 'signin_clear_attempts');
  delete from public.signin_attempts a where a.key = p_key;
end
$$;

-- An audit entry written before anyone is signed in (actor 'signin'): failed sign-ins, lockouts.
create function public.signin_audit(p_action pg_catalog.text, p_target_id pg_catalog.text, p_detail pg_catalog.jsonb)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform chat_private.require_scope('signin', 'signin_audit');
  insert into public.audit_log (actor_id, action, target_id, detail)
  values ('signin', p_action, p_target_id, coalesce(p_detail, '{}'::pg_catalog.jsonb));
end
$$;

-- --- grants --------------------------------------------------------------------------------------------

do $$
declare
  fn pg_catalog.regprocedure;
begin
  for fn in
    select p.oid::pg_catalog.regprocedure from pg_catalog.pg_proc p
    where p.pronamespace = 'public'::pg_catalog.regnamespace
      and p.proname = any (array[
        'list_conversations', 'delete_conversation', 'delete_all_user_data', 'add_message', 'recent_messages',
        'page_messages', 'path_messages', 'message_versions', 'choose_branch', 'current_path_ids',
        'history_page', 'usage_by_day', 'usage_by_user', 'message_models', 'count_request',
        'save_display_name', 'save_model_choice', 'create_api_key', 'revoke_own_sessions',
        'signin_open_session', 'signin_find_session', 'signin_revoke_session', 'signin_revoke_user_sessions',
        'signin_delete_user_sessions', 'signin_read_attempts', 'signin_record_failure', 'signin_block',
        'signin_clear_attempts', 'signin_audit'])
  loop
    execute pg_catalog.format('revoke all on function %s from public, anon', fn);
    execute pg_catalog.format('grant execute on function %s to authenticated', fn);
    if (select p.proname from pg_catalog.pg_proc p where p.oid = fn) like 'signin\_%' then
      execute pg_catalog.format('grant execute on function %s to chat_signin', fn);
    end if;
  end loop;
end
$$;
