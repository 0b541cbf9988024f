-- Which of a batch's job ids exist: the batch's commit outcome was unknown (its connection
-- was lost in flight) and its backend is gone, so what is here is what it committed.
SELECT id FROM jobs WHERE id = ANY($1::text[])
