-- A client's job and its round of input (answer_input): ?1 id, ?2 client.
SELECT state, input_requests, input_responses FROM jobs WHERE id = ?1 AND client_id = ?2
