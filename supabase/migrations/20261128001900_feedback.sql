-- Feedback for review (issue 15): a thumb up or down on an assistant reply, with an optional comment,
-- written by the person who chatted and read by reviewers on the History page.
--
-- One row per reply (the reply's id is the key): changing the thumb or the comment updates the row,
-- un-thumbing deletes it, and deleting the reply (or the conversation, or all of a user's data) deletes
-- its feedback through the foreign key. `user_id` is the owner, always the reply's own author: the
-- insert and update policies check that the message named is the writer's own (and that the row's copy
-- of its created_at is exact), so nobody can rate, or plant a rating on, someone else's reply, whatever
-- user_id they put in the row. Reviewers read every row (the same reviewer test as
-- messages_select_reviewer) and write none. Like every policy since 20261128001700, the caller and the
-- reviewer role come from chat_private.user_sub() / has_app_role(): only this app's own tokens reach rows.
--
-- Why the policy checks ownership only and the role (an assistant reply, not a streaming one) is checked
-- in set_feedback(): the policy is what makes a write safe, the function is what makes it meaningful. A
-- user who wrote a row on their own message through the Data API would fool only their own review data.
--
-- Every operation the app does is a `security invoker` SQL function below, so the app's Postgres backend
-- and the Supabase backend (`.rpc()`) run the same SQL and row-level security decides in both.

create table public.feedback (
  message_id uuid primary key references public.messages (id) on delete cascade,
  user_id text not null default (chat_private.user_sub()) check (char_length(user_id) between 1 and 255),
  rating smallint not null check (rating in (-1, 1)),  -- 1 thumbs up, -1 thumbs down
  -- The app's limit is CHAT_FEEDBACK_COMMENT_CHARS (at most this); no comment is null, never ''.
  comment text check (comment is null or char_length(comment) between 1 and 4000),
  -- The reply's own created_at, copied (the write policies check that it is): History lists feedback in
  -- the messages' keyset order, and this lets it walk the indexes below instead of the messages.
  message_created_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- History's feedback filter under keyset paging: a user's thumbs of one kind (or commented ones), newest
-- reply first, are a walk of one of these indexes from the cursor, each row joined to its message by
-- primary key; the reviewer's all-users view walks the last two (bench/history.py measures them).
create index feedback_user_rating_idx
  on public.feedback (user_id, rating, message_created_at desc, message_id desc);
create index feedback_user_commented_idx
  on public.feedback (user_id, message_created_at desc, message_id desc) where comment is not null;
create index feedback_rating_idx on public.feedback (rating, message_created_at desc, message_id desc);
create index feedback_commented_idx
  on public.feedback (message_created_at desc, message_id desc) where comment is not null;

alter table public.feedback enable row level security;
alter table public.feedback force row level security;

create policy feedback_select_own on public.feedback
  for select to authenticated using ((select chat_private.user_sub()) = user_id);
create policy feedback_select_reviewer on public.feedback
  for select to authenticated using ((select chat_private.has_app_role('reviewer')));
create policy feedback_insert_own on public.feedback
  for insert to authenticated with check (
    (select chat_private.user_sub()) = user_id
    and exists (
      select 1 from public.messages m
      where m.id = feedback.message_id and m.user_id = (select chat_private.user_sub())
        and m.created_at = feedback.message_created_at
    )
  );
create policy feedback_update_own on public.feedback
  for update to authenticated using ((select chat_private.user_sub()) = user_id)
  with check (
    (select chat_private.user_sub()) = user_id
    and exists (
      select 1 from public.messages m
      where m.id = feedback.message_id and m.user_id = (select chat_private.user_sub())
        and m.created_at = feedback.message_created_at
    )
  );
create policy feedback_delete_own on public.feedback
  for delete to authenticated using ((select chat_private.user_sub()) = user_id);

revoke all on public.feedback from anon;
grant select, insert, update, delete on public.feedback to authenticated;

-- Give (or change) the caller's feedback on one of their finished assistant replies; returns the row, or
-- no row when the message is not such a reply of theirs (the store says NotFound). `note`: null keeps the
-- stored comment (changing only the thumb), '' removes it, any other text replaces it (the app trims and
-- bounds it first).
create function public.set_feedback(target pg_catalog.uuid, thumb pg_catalog.int2, note pg_catalog.text)
returns setof public.feedback
language sql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $fn$
  insert into public.feedback as f (message_id, user_id, rating, comment, message_created_at)
  select m.id, m.user_id, thumb, nullif(note, ''), m.created_at
  from public.messages m
  where m.id = target and m.role = 'assistant' and m.status <> 'streaming'
    and m.user_id = (select chat_private.user_sub())
  on conflict (message_id) do update
    set rating = excluded.rating,
        comment = case when note is null then f.comment else excluded.comment end,
        updated_at = pg_catalog.now()
  returning f.*;
$fn$;

-- Remove the caller's feedback on a reply (un-thumbing); returns how many rows went (0 or 1).
create function public.clear_feedback(target pg_catalog.uuid)
returns pg_catalog.int4
language sql
volatile
security invoker
set search_path = pg_catalog, pg_temp
as $fn$
  with gone as (delete from public.feedback where message_id = target returning 1)
  select pg_catalog.count(*)::pg_catalog.int4 from gone;
$fn$;

-- The feedback on these messages that the caller may read (their own; everyone's for a reviewer).
create function public.message_feedback(targets pg_catalog.uuid[])
returns setof public.feedback
language sql
stable
security invoker
set search_path = pg_catalog, pg_temp
as $fn$
  select f.* from public.feedback f where f.message_id = any(targets);
$fn$;

revoke all on function public.set_feedback(pg_catalog.uuid, pg_catalog.int2, pg_catalog.text) from public, anon;
revoke all on function public.clear_feedback(pg_catalog.uuid) from public, anon;
revoke all on function public.message_feedback(pg_catalog.uuid[]) from public, anon;
grant execute on function public.set_feedback(pg_catalog.uuid, pg_catalog.int2, pg_catalog.text) to authenticated;
grant execute on function public.clear_feedback(pg_catalog.uuid) to authenticated;
grant execute on function public.message_feedback(pg_catalog.uuid[]) to authenticated;
