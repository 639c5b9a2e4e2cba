-- Room on every heap page for the next version of its rows: a rotation
-- changes no indexed column (the expiry only under sliding expiry), so with
-- free space on the page PostgreSQL updates the row in place (a HOT update)
-- instead of writing a new entry into each of the table's four indexes.
-- Applies to pages written from now on.
ALTER TABLE remember_tokens SET (fillfactor = 70);
