-- queue_stats returns, for every subscription, its available, delivered and
-- dead-lettered counts (from the count deltas) and the age of the message at
-- the head of its queue (one lookup in the ready index): what /metrics shows,
-- without reading the messages.
CREATE FUNCTION queue_stats()
RETURNS TABLE (subscription_id TEXT, available BIGINT, delivered BIGINT, dlq BIGINT, oldest_available_age_seconds DOUBLE PRECISION)
LANGUAGE sql
STABLE
AS $$
    SELECT
        s.id,
        coalesce(t.available, 0),
        coalesce(t.delivered, 0),
        coalesce(t.dlq, 0),
        coalesce(extract(epoch FROM now() - head.created_at), 0)::DOUBLE PRECISION
    FROM subscriptions AS s
    LEFT JOIN queue_totals AS t ON t.subscription_key = s.key
    LEFT JOIN LATERAL (
        SELECT m.created_at
        FROM messages AS m
        WHERE m.subscription_key = s.key AND m.locked_at IS NULL AND m.available_at <= now()
        ORDER BY m.available_at
        LIMIT 1
    ) AS head ON true
    ORDER BY s.id;
$$;
