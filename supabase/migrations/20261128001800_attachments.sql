-- Files and images attached to a user's message (issue 15), stored beside the message under the same rules:
-- each user reads and writes their own rows, reviewers read everyone's, nobody moves a row to another user.
--
-- Ownership follows the message by a composite foreign key, like messages -> conversations: an attachment's
-- message must be a message of the same conversation and the same user, and foreign-key checks see every
-- row whatever RLS hides, so attaching to another user's message fails like a missing row. Deleting a
-- message, a conversation or "all my data" removes its attachments (on delete cascade); a message moved by
-- an administrator takes its attachments along (on update cascade), so they never part from it.
--
-- What a page rerun reads is small: the name, type, size and a thumbnail stored at upload. The original
-- (`data`) and the text extracted from a document (`text`) are read only when the file is opened or sent
-- to a model; they live out of line (TOAST), so a row read without them costs the same at any file size.

create table public.attachments (
  id uuid primary key default gen_random_uuid(),
  message_id uuid not null,
  conversation_id uuid not null,
  user_id text not null default (auth.jwt() ->> 'sub') check (char_length(user_id) between 1 and 255),
  name text not null check (char_length(name) between 1 and 255),
  media_type text not null check (char_length(media_type) between 1 and 100),
  size integer not null check (size >= 0),
  data bytea not null,
  thumbnail bytea check (thumbnail is null or octet_length(thumbnail) <= 1048576),
  text text check (text is null or char_length(text) <= 10000000),
  created_at timestamptz not null default clock_timestamp(),
  constraint attachments_size_matches check (octet_length(data) = size),
  foreign key (message_id, conversation_id, user_id)
    references public.messages (id, conversation_id, user_id) on delete cascade on update cascade
);

-- Images and PDFs are compressed already: storing them uncompressed (EXTERNAL) saves the CPU of a pglz
-- attempt that gains nothing, and lets a slice of the value be read without decompressing all of it.
alter table public.attachments alter column data set storage external;
alter table public.attachments alter column thumbnail set storage external;

-- A window of messages' attachments (the chat page, History's detail view) and the cascade above.
create index attachments_message_idx on public.attachments (message_id, created_at, id);
-- A user's attachments in order, for the JSON export's keyset batches.
create index attachments_user_created_idx on public.attachments (user_id, created_at, id);

alter table public.attachments enable row level security;
alter table public.attachments force row level security;

-- The policies are those of messages, written in whichever form the database's messages policies use: the
-- caller as `auth.jwt() ->> 'sub'`, or, once migration 20261128001700 (issue 16: only this app's own tokens
-- reach user rows) has run, as `chat_private.user_sub()` and `chat_private.has_app_role('reviewer')`. Both
-- migrations are written in the same session; whichever order they land in, attachments trust exactly
-- what messages trust.
do $$
declare
  app_tokens boolean := to_regprocedure('chat_private.user_sub()') is not null;
  caller text := case when app_tokens then '(select chat_private.user_sub())'
    else '(select auth.jwt() ->> ''sub'')' end;
  reviewer text := case when app_tokens then '(select chat_private.has_app_role(''reviewer''))'
    else '(select coalesce(auth.jwt() @? ''$ ? (@.roles == "reviewer" || @.metadata.roles == "reviewer")'', false))'
  end;
begin
  execute format(
    'create policy attachments_select_own on public.attachments for select to authenticated using (%s = user_id)',
    caller);
  execute format(
    'create policy attachments_select_reviewer on public.attachments for select to authenticated using (%s)',
    reviewer);
  execute format(
    'create policy attachments_insert_own on public.attachments for insert to authenticated with check ('
    '%1$s = user_id and exists (select 1 from public.messages m where m.id = message_id and m.user_id = %1$s))',
    caller);
  execute format(
    'create policy attachments_delete_own on public.attachments for delete to authenticated using (%s = user_id)',
    caller);
end
$$;

-- Attachments are never edited: no update grant and no update policy.
revoke all on public.attachments from anon;
grant select, insert, delete on public.attachments to authenticated;

-- The store's operations, one SQL function each, so every backend (psycopg here, PostgREST `.rpc()` for
-- Supabase) runs the same statements. `security invoker`: they run as the caller, and the policies above
-- decide what each may see or write, exactly as for a plain statement. The schema is named in full and
-- the search path pinned, so a caller's own objects cannot stand in for ours.

-- Attach a file to one of the caller's messages; the conversation is the message's own.
create function public.add_attachment(
  p_message_id uuid, p_name text, p_media_type text, p_data bytea, p_thumbnail bytea, p_text text
) returns table (
  id uuid, message_id uuid, user_id text, name text, media_type text, size integer, created_at timestamptz
)
language sql volatile security invoker set search_path = pg_catalog, pg_temp as $$
  insert into public.attachments as a (message_id, conversation_id, user_id, name, media_type, size, data,
    thumbnail, text)
  select m.id, m.conversation_id, m.user_id, p_name, p_media_type, octet_length(p_data), p_data, p_thumbnail,
    p_text
  from public.messages m
  where m.id = p_message_id and m.user_id = (select auth.jwt() ->> 'sub')
  returning a.id, a.message_id, a.user_id, a.name, a.media_type, a.size, a.created_at;
$$;

-- An edited message keeps the files of the version it replaces: copied inside the database, never through
-- the app. Both messages must be the caller's own (the policies and the composite key see to it).
create function public.copy_attachments(p_from uuid, p_to uuid)
returns integer
language sql volatile security invoker set search_path = pg_catalog, pg_temp as $$
  with copied as (
    insert into public.attachments (message_id, conversation_id, user_id, name, media_type, size, data,
      thumbnail, text, created_at)
    select m.id, m.conversation_id, m.user_id, a.name, a.media_type, a.size, a.data, a.thumbnail, a.text,
      clock_timestamp()
    from public.attachments a
    join public.messages m on m.id = p_to and m.user_id = (select auth.jwt() ->> 'sub')
    where a.message_id = p_from and a.user_id = (select auth.jwt() ->> 'sub')
    order by a.created_at, a.id
    returning 1
  )
  select count(*)::integer from copied;
$$;

-- What a page shows for these messages: names, types, sizes and thumbnails, never the originals.
create function public.message_attachments(p_message_ids uuid[])
returns table (
  id uuid, message_id uuid, user_id text, name text, media_type text, size integer, created_at timestamptz,
  thumbnail bytea
)
language sql stable security invoker set search_path = pg_catalog, pg_temp as $$
  select a.id, a.message_id, a.user_id, a.name, a.media_type, a.size, a.created_at, a.thumbnail
  from public.attachments a
  where a.message_id = any(p_message_ids)
  order by a.message_id, a.created_at, a.id;
$$;

-- One original, when a user opens or downloads it.
create function public.attachment_data(p_id uuid)
returns table (name text, media_type text, data bytea)
language sql stable security invoker set search_path = pg_catalog, pg_temp as $$
  select a.name, a.media_type, a.data from public.attachments a where a.id = p_id;
$$;

-- What a model is sent for these messages: a document's extracted text, an image's bytes.
create function public.attachment_contents(p_message_ids uuid[])
returns table (id uuid, message_id uuid, name text, media_type text, text text, data bytea)
language sql stable security invoker set search_path = pg_catalog, pg_temp as $$
  select a.id, a.message_id, a.name, a.media_type, a.text,
    case when a.media_type like 'image/%' then a.data end
  from public.attachments a
  where a.message_id = any(p_message_ids)
  order by a.message_id, a.created_at, a.id;
$$;

-- The caller's own attachments (also a reviewer's: an export is "my data"), oldest first, keyset paged.
create function public.export_attachments(p_after_at timestamptz, p_after_id uuid, p_limit integer)
returns table (
  id uuid, message_id uuid, name text, media_type text, size integer, created_at timestamptz, data bytea
)
language sql stable security invoker set search_path = pg_catalog, pg_temp as $$
  select a.id, a.message_id, a.name, a.media_type, a.size, a.created_at, a.data
  from public.attachments a
  where a.user_id = (select auth.jwt() ->> 'sub')
    and (p_after_at is null or (a.created_at, a.id) > (p_after_at, p_after_id))
  order by a.created_at, a.id
  limit least(greatest(p_limit, 1), 1000);
$$;

revoke all on function public.add_attachment(uuid, text, text, bytea, bytea, text) from public, anon;
revoke all on function public.copy_attachments(uuid, uuid) from public, anon;
revoke all on function public.message_attachments(uuid[]) from public, anon;
revoke all on function public.attachment_data(uuid) from public, anon;
revoke all on function public.attachment_contents(uuid[]) from public, anon;
revoke all on function public.export_attachments(timestamptz, uuid, integer) from public, anon;
grant execute on function public.add_attachment(uuid, text, text, bytea, bytea, text) to authenticated;
grant execute on function public.copy_attachments(uuid, uuid) to authenticated;
grant execute on function public.message_attachments(uuid[]) to authenticated;
grant execute on function public.attachment_data(uuid) to authenticated;
grant execute on function public.attachment_contents(uuid[]) to authenticated;
grant execute on function public.export_attachments(timestamptz, uuid, integer) to authenticated;
