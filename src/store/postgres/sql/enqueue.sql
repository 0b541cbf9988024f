-- One group commit in one statement (autocommit): the batch's nonces, then its jobs.
-- (No NOTIFY here: a transaction that notifies holds a global lock through its commit, so
-- concurrent group commits could no longer overlap their WAL flushes. A separate task sends
-- the wake-up after the commit; see `notify_loop`.)
-- $1 nonce keys, $2 their expiries, $3 now: a nonce is admitted unless a live copy exists
--    (an expired copy not yet pruned is taken over).
-- $4.. one array per job column; $14 the job's nonce key (NULL for a /mcp call); $15 its
--    input_responses (answers given before the job existed, usually NULL); $16 priority,
--    $17 boost (ms), $18 run_at (the not-before time; created_at unless scheduled), $19 ckey
--    (the concurrency key of a tool limited per key, else NULL), $20 callback (the webhook
--    URL, docs/WEBHOOKS.md, usually NULL). A job whose
--    nonce was not admitted (another daemon admitted it first: a replay) is not inserted; a
--    job whose idempotency key names an existing job is not inserted either (ON CONFLICT).
-- Returns the admitted nonce keys and the inserted job ids; the caller tells the rest apart.
WITH n AS (
    INSERT INTO nonces AS o (key, expires_ms)
    SELECT * FROM unnest($1::bytea[], $2::int8[])
    ON CONFLICT (key) DO UPDATE SET expires_ms = excluded.expires_ms WHERE o.expires_ms < $3
    RETURNING key
), j AS (
    INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, idempotency_key,
                      created_at, def, on_crash, capped, input_responses, priority, boost, ckey, callback)
    SELECT t.id, t.client, t.tool, t.args, 'queued', t.max, t.run_at, t.key, t.at, t.def, t.crash,
           t.capped, t.answers, t.priority, t.boost, t.ckey, t.callback
    FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::int4[], $9::int8[],
                $10::text[], $11::text[], $12::int2[], $13::bool[], $14::bytea[], $15::text[],
                $16::int2[], $17::int8[], $18::int8[], $19::text[], $20::text[])
         AS t(id, client, tool, args, max, at, key, def, crash, capped, nonce, answers, priority,
              boost, run_at, ckey, callback)
    WHERE t.nonce IS NULL OR t.nonce IN (SELECT key FROM n)
    ORDER BY t.at
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT (SELECT coalesce(array_agg(key), '{}') FROM n),
       (SELECT coalesce(array_agg(id), '{}') FROM j)
