-- The chat picker remembers each user's last model across sessions and devices: one more column on the
-- user's own profile row, under the same policies (the owner writes it; the owner and reviewers read it).
-- A user whose token carries no name has no display name, yet may still keep a model choice: the name
-- becomes optional, and readers of names skip rows without one.

alter table public.profiles alter column display_name drop not null;
alter table public.profiles
  add column last_model text check (last_model is null or char_length(last_model) between 1 and 200);
