-- Per-user rate limit state, shared by every app replica (one row per user, fixed one-minute window).
-- Row-level security: a user can only see and advance their own counter.

create table public.rate_limits (
  user_id text primary key default (auth.jwt() ->> 'sub') check (char_length(user_id) between 1 and 255),
  window_start timestamptz not null default now(),
  hits integer not null default 0 check (hits >= 0)
);

alter table public.rate_limits enable row level security;
alter table public.rate_limits force row level security;

create policy rate_limits_select_own on public.rate_limits
  for select to authenticated using ((select auth.jwt() ->> 'sub') = user_id);
create policy rate_limits_insert_own on public.rate_limits
  for insert to authenticated with check ((select auth.jwt() ->> 'sub') = user_id);
create policy rate_limits_update_own on public.rate_limits
  for update to authenticated using ((select auth.jwt() ->> 'sub') = user_id)
  with check ((select auth.jwt() ->> 'sub') = user_id);

revoke all on public.rate_limits from anon;
grant select, insert, update on public.rate_limits to authenticated;
