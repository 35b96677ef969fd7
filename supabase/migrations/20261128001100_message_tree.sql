-- Messages form a tree (issue 14): each message has a parent, a conversation remembers its current leaf.
-- Editing a user message adds a sibling of it; regenerating a reply adds a sibling reply; nothing is
-- deleted. The model's context is the path from the root to the current leaf.
--
-- Ownership is enforced by composite foreign keys, like messages -> conversations: a parent must be a
-- message of the same conversation and the same user, and so must a conversation's current leaf. The
-- row-level-security policies already pin each row's user_id to the caller (insert/update `with check`),
-- and foreign-key checks see every row regardless of RLS, so pointing a parent or a leaf at another
-- user's message (or at one in another conversation) fails like a missing row, whoever writes: the
-- app, the Supabase API or SQL. No policy changes.

alter table public.messages add column parent_id uuid;
-- Target of the parent and leaf foreign keys (id alone is already unique; the extra columns carry the
-- same-conversation, same-user rule).
alter table public.messages
  add constraint messages_id_conversation_user_key unique (id, conversation_id, user_id);
alter table public.messages
  add constraint messages_parent_fkey foreign key (parent_id, conversation_id, user_id)
  references public.messages (id, conversation_id, user_id) on delete cascade;
alter table public.messages add constraint messages_parent_not_self check (parent_id <> id);
-- A message's children in order (version switcher, newest leaf under a branch) and the cascade above.
create index messages_parent_idx on public.messages (parent_id, created_at, id);

alter table public.conversations add column current_leaf_id uuid;
-- Only the leaf column is cleared when its message goes: `set null (col)` (PostgreSQL 15+) keeps the
-- conversation's own id and user_id, which the foreign key also names.
alter table public.conversations
  add constraint conversations_current_leaf_fkey foreign key (current_leaf_id, id, user_id)
  references public.messages (id, conversation_id, user_id) on delete set null (current_leaf_id);

-- Existing conversations become linear chains in (created_at, id) order, except that an assistant reply
-- hangs under the user message it answers: today's stacked regenerated replies (several assistant
-- messages after one user message) become siblings. A user message follows whatever came just before
-- it (after a regenerate, the newest reply, which is what the context used). Assistant messages before
-- any user message (none are written today) stay a chain.
with numbered as (
  select id, conversation_id, role, created_at,
    lag(id) over w as prev_id,
    count(*) filter (where role = 'user') over (w rows between unbounded preceding and current row) as turn
  from public.messages
  window w as (partition by conversation_id order by created_at, id)
), grouped as (
  select id, role, prev_id, turn,
    first_value(id) over (partition by conversation_id, turn order by created_at, id) as turn_start
  from numbered
)
update public.messages m
set parent_id = case when g.role = 'assistant' and g.turn > 0 then g.turn_start else g.prev_id end
from grouped g
where g.id = m.id;

-- The current leaf of a migrated conversation is its newest message: what the chat page showed last.
update public.conversations c
set current_leaf_id = last.id
from (
  select distinct on (conversation_id) conversation_id, id
  from public.messages
  order by conversation_id, created_at desc, id desc
) last
where last.conversation_id = c.id;

-- The tree's shape is fixed once written: moving a message to another parent could make a cycle or
-- rewrite what a reply answered. Content and status still change while a reply streams.
create function public.messages_keep_parent() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  if new.parent_id is distinct from old.parent_id then
    raise exception 'a message''s parent cannot be changed' using errcode = 'check_violation';
  end if;
  return new;
end;
$$;

create trigger messages_keep_parent
  before update of parent_id on public.messages
  for each row execute function public.messages_keep_parent();
