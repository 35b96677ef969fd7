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
-- caller is whoever `auth.jwt()` names; neither takes a user id. A reviewer, who may read every profile,
-- still gets only their own default here.
create function public.my_default_instructions()
returns pg_catalog.text
language sql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $$
  select p.default_instructions from public.profiles p where p.user_id = (select auth.jwt() ->> 'sub')
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
  values ((select auth.jwt() ->> 'sub'), nullif(set_my_default_instructions.instructions, ''))
  on conflict (user_id) do update
    set default_instructions = excluded.default_instructions, updated_at = now()
    where p.default_instructions is distinct from excluded.default_instructions;
  select p.default_instructions from public.profiles p where p.user_id = (select auth.jwt() ->> 'sub');
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
