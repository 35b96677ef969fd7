-- Display names for the reviewer view: one small row per user, written by that user's own session (the
-- app saves the verified token's `name`/`username` claim), readable by its owner and by reviewers. Nothing
-- else about a user is kept here. No security-definer function is needed: row-level security does it.

create table public.profiles (
  user_id text primary key default (auth.jwt() ->> 'sub') check (char_length(user_id) between 1 and 255),
  display_name text not null check (char_length(display_name) between 1 and 200),
  updated_at timestamptz not null default now()
);

alter table public.profiles enable row level security;
alter table public.profiles force row level security;

create policy profiles_select_own on public.profiles
  for select to authenticated using ((select auth.jwt() ->> 'sub') = user_id);
-- The same reviewer test as messages_select_reviewer (20261126000200): read-only, like every reviewer policy.
create policy profiles_select_reviewer on public.profiles
  for select to authenticated using ((
    select coalesce(auth.jwt() @? '$ ? (@.roles == "reviewer" || @.metadata.roles == "reviewer")', false)
  ));
create policy profiles_insert_own on public.profiles
  for insert to authenticated with check ((select auth.jwt() ->> 'sub') = user_id);
create policy profiles_update_own on public.profiles
  for update to authenticated using ((select auth.jwt() ->> 'sub') = user_id)
  with check ((select auth.jwt() ->> 'sub') = user_id);
create policy profiles_delete_own on public.profiles
  for delete to authenticated using ((select auth.jwt() ->> 'sub') = user_id);

revoke all on public.profiles from anon;
grant select, insert, update, delete on public.profiles to authenticated;
