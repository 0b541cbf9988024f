-- $1 clients, $2 idempotency keys (pairs): the job each pair names.
SELECT j.client_id, j.idempotency_key, j.id
FROM jobs j JOIN unnest($1::text[], $2::text[]) AS k(client, key)
  ON j.client_id = k.client AND j.idempotency_key = k.key
