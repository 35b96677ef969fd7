-- Conversations and messages, private to each user through row-level security.
-- Valid on a real Supabase project (`supabase db push`) and on plain Postgres after the local shim
-- (services/store/shim.sql) has created auth.jwt() and the anon/authenticated roles.
-- user_id is text: Clerk user ids ("user_...") are not UUIDs, so policies compare auth.jwt()->>'sub'.

create table public.conversations (
  id uuid primary key default gen_random_uuid(),
  user_id text not null default (auth.jwt() ->> 'sub') check (char_length(user_id) between 1 and 255),
  title text not null default 'New chat' check (char_length(title) between 1 and 200),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- target of the messages' composite foreign key: a message's owner is its conversation's owner
  unique (id, user_id)
);

create table public.messages (
  id uuid primary key default gen_random_uuid(),
  conversation_id uuid not null,
  user_id text not null default (auth.jwt() ->> 'sub') check (char_length(user_id) between 1 and 255),
  role text not null check (role in ('user', 'assistant')),
  content text not null check (char_length(content) <= 1000000),
  model text not null check (char_length(model) between 1 and 200),
  status text not null default 'complete' check (status in ('streaming', 'complete', 'interrupted', 'error')),
  input_tokens integer check (input_tokens >= 0),
  output_tokens integer check (output_tokens >= 0),
  latency_ms integer check (latency_ms >= 0),
  created_at timestamptz not null default clock_timestamp(),
  foreign key (conversation_id, user_id) references public.conversations (id, user_id) on delete cascade
);

-- Keyset paging of a user's history, newest first; the id breaks ties between equal timestamps.
create index messages_user_created_idx on public.messages (user_id, created_at desc, id desc);
-- A conversation's messages in order (chat page, context window).
create index messages_conversation_created_idx on public.messages (conversation_id, created_at, id);
-- The sidebar: a user's conversations, most recently active first.
create index conversations_user_updated_idx on public.conversations (user_id, updated_at desc, id desc);

alter table public.conversations enable row level security;
alter table public.conversations force row level security;
alter table public.messages enable row level security;
alter table public.messages force row level security;

-- `(select auth.jwt() ->> 'sub')` is evaluated once per statement (an initplan), not once per row.
create policy conversations_select_own on public.conversations
  for select to authenticated using ((select auth.jwt() ->> 'sub') = user_id);
create policy conversations_insert_own on public.conversations
  for insert to authenticated with check ((select auth.jwt() ->> 'sub') = user_id);
create policy conversations_update_own on public.conversations
  for update to authenticated using ((select auth.jwt() ->> 'sub') = user_id)
  with check ((select auth.jwt() ->> 'sub') = user_id);
create policy conversations_delete_own on public.conversations
  for delete to authenticated using ((select auth.jwt() ->> 'sub') = user_id);

create policy messages_select_own on public.messages
  for select to authenticated using ((select auth.jwt() ->> 'sub') = user_id);
create policy messages_insert_own on public.messages
  for insert to authenticated with check (
    (select auth.jwt() ->> 'sub') = user_id
    and exists (
      select 1 from public.conversations c
      where c.id = conversation_id and c.user_id = (select auth.jwt() ->> 'sub')
    )
  );
create policy messages_update_own on public.messages
  for update to authenticated using ((select auth.jwt() ->> 'sub') = user_id)
  with check ((select auth.jwt() ->> 'sub') = user_id);
create policy messages_delete_own on public.messages
  for delete to authenticated using ((select auth.jwt() ->> 'sub') = user_id);

-- Keep the sidebar order right whoever writes messages (the app, the Supabase API, SQL).
create function public.touch_conversation() returns trigger
language plpgsql set search_path = '' as $$
begin
  update public.conversations set updated_at = now()
  where id = new.conversation_id and updated_at < now();
  return null;
end;
$$;

create trigger messages_touch_conversation
  after insert on public.messages
  for each row execute function public.touch_conversation();

revoke all on public.conversations, public.messages from anon;
grant select, insert, update, delete on public.conversations, public.messages to authenticated;
