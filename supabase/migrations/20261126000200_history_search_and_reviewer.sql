-- History page: full-text search over messages, and the read-only reviewer view.

-- Search vector, stored. Why a stored column rather than only an expression index: under row-level
-- security Postgres may not use an index for `@@` in a user's query (ts_match_vq is not LEAKPROOF, so
-- it must run after the policies), which leaves the newest-first walk of messages_user_created_idx
-- with `search @@ q` as a filter. Reading a stored tsvector per row costs far less than re-running
-- to_tsvector on the content. 'simple' = no stemming and no stop words: chats are in any language.
-- Only the first 100,000 characters are indexed: a tsvector is capped at 1 MB, and a 1,000,000-char
-- reply of distinct words would otherwise make the insert fail and lose the reply.
alter table public.messages
  add column search tsvector generated always as (to_tsvector('simple', left(content, 100000))) stored;

-- GIN index for the same predicate: used by roles exempt from RLS (SQL editor, service role, reports)
-- and by the planner's statistics; the app's own search walks the keyset index (see above).
create index messages_search_idx on public.messages using gin (search);

-- The status filter looks for the rare cases (error, interrupted, streaming): a small partial index
-- keeps that page fast when most of a long history is 'complete' (the planner proves status = 'error'
-- implies status <> 'complete').
create index messages_user_unfinished_idx on public.messages (user_id, created_at desc, id desc)
  where status <> 'complete';

-- Reviewer "all users" listing: keyset paging newest-first without a user_id prefix.
create index messages_created_idx on public.messages (created_at desc, id desc);

-- Reviewer role from verified token claims: local accounts put roles in `roles`, Clerk session tokens
-- in `metadata.roles` (public metadata). Either may be a list or a single string; in lax mode the
-- jsonpath comparison unwraps a list, so both forms match and {"reviewer": true} does not. One
-- jsonpath over one parse of the claims: measured ~10 us per query cheaper than four `->` tests.
-- Permissive policies are OR-ed with the owner policies, and these are `for select` only: a reviewer
-- can read every row and still write only their own (insert/update/delete policies are unchanged).
create policy messages_select_reviewer on public.messages
  for select to authenticated using ((
    select coalesce(auth.jwt() @? '$ ? (@.roles == "reviewer" || @.metadata.roles == "reviewer")', false)
  ));

create policy conversations_select_reviewer on public.conversations
  for select to authenticated using ((
    select coalesce(auth.jwt() @? '$ ? (@.roles == "reviewer" || @.metadata.roles == "reviewer")', false)
  ));
