-- Standing instructions per conversation (a system prompt), and managing conversations from the chat page.
--
-- The instructions live on the conversation row, so the conversations policies (own rows; reviewers read)
-- cover them with no new policy. Empty means "none". 20,000 characters is far above any useful system
-- prompt and keeps one from crowding out the conversation itself in the model's context.
alter table public.conversations
  add column instructions text not null default '' check (char_length(instructions) <= 20000);

-- The sidebar's title filter walks the caller's conversations newest first with the title test as a
-- filter, keyset paged like the unfiltered list, and stops at a page of matches. The walk's index now
-- carries the title (INCLUDE), so the filter reads index pages only (an index-only scan, no heap page
-- per conversation); it replaces conversations_user_updated_idx, whose queries it serves unchanged.
-- Why not a trigram (pg_trgm) or lower(title) index: under row-level security PostgreSQL uses an index
-- only for leakproof operators of a user's query, and ILIKE/LIKE are not leakproof, so the app's own
-- query could never use one (the same finding as the message search, migration 20261126000200). The
-- walk is bounded by one user's conversations: EXPLAIN ANALYZE of the worst case (no title matches,
-- all 10,000 of a user's conversations read) is a few milliseconds (bench/conversation_tree.py).
create index conversations_user_updated_title_idx
  on public.conversations (user_id, updated_at desc, id desc) include (title);
drop index public.conversations_user_updated_idx;
