-- $1 after this seq, $2 written at or after (ms), $3 at most this many; in chain order.
SELECT seq, at, kind, actor, tool, args_digest, args, outcome, count::int8, request_id, job_id,
       trace_id, detail, prev, digest
FROM audit
WHERE seq > $1 AND at >= $2
ORDER BY seq
LIMIT $3
