-- A per-user default for the standing instructions a new conversation starts with (issue 14), kept on the
-- user's own profile row, so the profiles policies cover it with no new policy: the owner writes it, the
-- owner and reviewers read it. Precedence when a conversation starts: what the user typed for it, then this,
-- then the server's CHAT_DEFAULT_INSTRUCTIONS. Null means "no default of my own"; the same 20,000-character
-- limit as conversations.instructions, whose value a default becomes.

alter table public.profiles
  add column default_instructions text
    check (default_instructions is null or char_length(default_instructions) between 1 and 20000);

-- The store's SQL for it, in functions both backends call (the Postgres backend with `select ... from`, the
-- Supabase one by RPC). `security invoker`: they run as the caller, so row-level security decides, and the
-- caller is whoever chat_private.user_sub() names (an app user token only, migration 20261128001700); neither takes a user id. A reviewer, who may read every profile,
-- still gets only their own default here.
create function public.my_default_instructions()
returns pg_catalog.text
language sql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
  select p.default_instructions from public.profiles p where p.user_id = (select chat_private.user_sub())
$$;

-- Stores the caller's default ('' clears it) and returns what is stored now (null: none). Updating an
-- existing row leaves its display name and model choice alone.
create function public.set_my_default_instructions(instructions pg_catalog.text)
returns pg_catalog.text
language sql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $$
  insert into public.profiles as p (user_id, default_instructions)
  values ((select chat_private.user_sub()), nullif(set_my_default_instructions.instructions, ''))
  on conflict (user_id) do update
    set default_instructions = excluded.default_instructions, updated_at = now()
    where p.default_instructions is distinct from excluded.default_instructions;
  select p.default_instructions from public.profiles p where p.user_id = (select chat_private.user_sub());
$$;

revoke all on function public.my_default_instructions() from public, anon;
revoke all on function public.set_my_default_instructions(pg_catalog.text) from public, anon;
grant execute on function public.my_default_instructions() to authenticated;
grant execute on function public.set_my_default_instructions(pg_catalog.text) to authenticated;

-- The sidebar's title filter (migration 20261128001200) tested `title ilike '%…%'` on each of a user's
-- conversations: with 10,000 of them the walk spent 4-12 ms in ILIKE alone, which lowers both strings for
-- every row. The title is now kept lowered too, and the filter is `title_folded like lower('%…%')`: the
-- same match (for a multibyte encoding PostgreSQL's ILIKE is LIKE over lower() of both sides), a quarter
-- of the time or less (bench/conversation_tree.py). The walk's index carries the lowered title instead.
alter table public.conversations add column title_folded text generated always as (lower(title)) stored;
create index conversations_user_updated_folded_idx
  on public.conversations (user_id, updated_at desc, id desc) include (title_folded);
drop index public.conversations_user_updated_title_idx;

-- public.list_conversations (migration 20261128001710) with the filter over the lowered title.
create or replace function public.list_conversations(
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
        or c.title_folded like pg_catalog.lower(
          '%' || pg_catalog.regexp_replace(p_title_filter, '([\\%_])', '\\\1', 'g') || '%'
        )
      )
    order by c.updated_at desc, c.id desc
    limit p_page_size;
end
$$;
