-- Standing instructions per conversation (a system prompt), and managing conversations from the chat page.
--
-- The instructions live on the conversation row, so the conversations policies (own rows; reviewers read)
-- cover them with no new policy. Empty means "none". 20,000 characters is far above any useful system
-- prompt and keeps one from crowding out the conversation itself in the model's context.
alter table public.conversations
  add column instructions text not null default '' check (char_length(instructions) <= 20000);

-- The sidebar's title filter walks conversations_user_updated_idx (user_id, updated_at desc, id desc)
-- newest first with the title test as a filter, keyset paged like the unfiltered list. Why no trigram
-- (pg_trgm) or lower(title) index: under row-level security PostgreSQL may only use an index for
-- leakproof operators in a user's query, and ILIKE is not leakproof, so the app's own query could never
-- use one (the same finding as the message search, migration 20261126000200). The walk reads only the
-- caller's rows: about 10,000 conversations of one user are filtered in a few milliseconds (bench/
-- conversation_filter.py), and a page of matches ends the walk early when matches are common.
