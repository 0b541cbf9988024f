-- Ends the backend of a group-commit connection that was lost in flight, if PostgreSQL still
-- runs it: a row means it is still there (and was signalled again), none that it is gone.
-- Only once it is gone can its transaction no longer commit, and a lookup tell what it did.
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND usename = current_user
