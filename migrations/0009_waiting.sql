-- Consumers that wait: the fallback check of waiting consumers, and streaming pull.
--
-- A stream counts its consumer's live deliveries only when it may be at its limit: the
-- count walks every live delivery of the subscription (its leases index) and visits the
-- heap for each, which on every batch cost the streaming benchmark more PostgreSQL time per
-- message than everything else together. The server knows an upper bound of what it
-- delivered on a stream since it last counted (acks, nacks and expiries only lower it).
--
-- A waiting consumer holds no connection: the server wakes it when a publish of its
-- topic is seen (in the process, or through a NOTIFY from another one), and checks
-- once a second for what a lost notification missed, one statement for all of its
-- waiting subscriptions.

-- ready_subscriptions returns those of the given subscriptions that have a message
-- ready to be consumed (one lookup each in the ready index), or that no longer exist
-- (their waiters then learn it from their next statement).
CREATE FUNCTION ready_subscriptions(p_subscription_ids TEXT[])
RETURNS SETOF TEXT
LANGUAGE sql
STABLE
SET enable_seqscan = off
AS $$
    SELECT w.id
    FROM unnest(p_subscription_ids) AS w (id)
    LEFT JOIN subscriptions AS s ON s.id = w.id
    WHERE s.key IS NULL OR EXISTS (
        SELECT 1 FROM messages AS m
        WHERE m.subscription_key = s.key AND m.locked_at IS NULL AND m.available_at <= now()
    );
$$;

-- stream_messages delivers to a stream's consumer up to p_batch_size ready messages,
-- without letting its live deliveries (leases not ended) exceed p_max_outstanding. They
-- are counted unless p_outstanding_at_most, a bound the caller knows, leaves room. Each row
-- carries the consumer's live deliveries after this one (counted, or the bound plus the
-- batch) and whether they were counted; when it delivers nothing it returns one row with a
-- null id carrying them. Raises FP404 for a missing subscription.
CREATE FUNCTION stream_messages(
    p_subscription_id TEXT,
    p_consumer_id TEXT,
    p_max_outstanding INTEGER,
    p_batch_size INTEGER,
    p_outstanding_at_most INTEGER
)
RETURNS TABLE (id BIGINT, payload JSON, delivery_attempts INTEGER, created_at TIMESTAMPTZ, outstanding INTEGER, counted BOOLEAN)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_key BIGINT := (get_subscription(p_subscription_id)).key;
    v_counted BOOLEAN := p_outstanding_at_most IS NULL OR p_outstanding_at_most >= p_max_outstanding;
    v_outstanding INTEGER := p_outstanding_at_most;
    v_room INTEGER;
BEGIN
    IF v_counted THEN
        -- The leases index holds a subscription's deliveries by the end of their lease.
        SELECT count(*) INTO v_outstanding
        FROM messages AS m
        WHERE m.subscription_key = v_key AND m.locked_at IS NOT NULL AND m.available_at > now()
          AND m.consumer_id = p_consumer_id;
    END IF;
    v_room := least(p_max_outstanding - v_outstanding, p_batch_size);
    IF v_room > 0 THEN
        RETURN QUERY
        SELECT c.id, c.payload, c.delivery_attempts, c.created_at, (v_outstanding + count(*) OVER ())::INTEGER, v_counted
        FROM consume_messages(p_subscription_id, p_consumer_id, v_room) AS c
        ORDER BY c.created_at, c.id;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT NULL::BIGINT, NULL::JSON, NULL::INTEGER, NULL::TIMESTAMPTZ, v_outstanding, v_counted;
END;
$$;
