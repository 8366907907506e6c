-- Leases: per-subscription ack deadlines, ModifyAckDeadline, nack delays, acks bound to one
-- consumer, UpdateSubscription, and expired leases released as failed attempts.
--
-- A delivery is live while its lease has not ended. For a delivered message (locked_at IS NOT
-- NULL), messages.available_at now holds WHEN ITS LEASE ENDS: consume sets it to now() plus the
-- subscription's ack_deadline_seconds, ModifyAckDeadline moves it, and a release sets it back to
-- when the message is ready again. For a message that is not delivered it keeps its meaning (when
-- the message is ready). Until this migration a delivery stayed live for a lock timeout given by
-- the server; deliveries made before it get the new default, 60 s from when they were made.
--
-- The index of deliveries now keys them by lease end, instead of by locked_at, so that expired
-- leases are found by a range scan (expire_leases); the table keeps the same number of indexes.
-- Ack, nack and ModifyAckDeadline still find their rows by primary key only (see 0006): their test
-- of a live lease is lease_live(), from which the planner can prove no index predicate.
--
-- release_deliveries takes a delay (NULL: the backoff); cleanup_stuck_messages, which calls it, is
-- restated for that and keeps its meaning: it releases every delivery locked longer than its
-- threshold, whatever the lease.

ALTER TABLE subscriptions
    ADD COLUMN ack_deadline_seconds INTEGER NOT NULL DEFAULT 60 CHECK (ack_deadline_seconds BETWEEN 1 AND 600);

UPDATE messages SET available_at = locked_at + interval '60 seconds' WHERE locked_at IS NOT NULL;

DROP INDEX messages_locked_idx;
-- Deliveries by the end of their lease, for finding the expired ones.
CREATE INDEX messages_leases_idx ON messages (subscription_key, available_at) WHERE locked_at IS NOT NULL;

-- lease_live tells whether a message is out for delivery on a lease that ends after p_at.
CREATE FUNCTION lease_live(p_locked_at TIMESTAMPTZ, p_lease_end TIMESTAMPTZ, p_at TIMESTAMPTZ)
RETURNS BOOLEAN
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    -- coalesce: not strict, so no index predicate on locked_at follows from it.
    SELECT coalesce(p_locked_at IS NOT NULL AND p_lease_end > p_at, false);
$$;

DROP FUNCTION create_subscription(TEXT, TEXT, JSONB, INTEGER, INTEGER, INTEGER);

-- create_subscription subscribes to a topic; it raises FP409 when the id is
-- taken and FP404 when the topic does not exist.
CREATE FUNCTION create_subscription(
    p_id TEXT,
    p_topic_id TEXT,
    p_filter JSONB,
    p_max_delivery_attempts INTEGER,
    p_backoff_min_seconds INTEGER,
    p_backoff_max_seconds INTEGER,
    p_ack_deadline_seconds INTEGER
)
RETURNS subscriptions
LANGUAGE plpgsql
AS $$
DECLARE
    v_subscription subscriptions;
BEGIN
    INSERT INTO subscriptions (id, topic_id, filter, max_delivery_attempts, backoff_min_seconds, backoff_max_seconds, ack_deadline_seconds)
    VALUES (p_id, p_topic_id, p_filter, p_max_delivery_attempts, p_backoff_min_seconds, p_backoff_max_seconds, p_ack_deadline_seconds)
    ON CONFLICT (id) DO NOTHING
    RETURNING * INTO v_subscription;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'This subscription already exists' USING ERRCODE = 'FP409';
    END IF;
    RETURN v_subscription;
EXCEPTION
    WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'Topic not found' USING ERRCODE = 'FP404';
END;
$$;

-- update_subscription changes a subscription's delivery settings (a NULL keeps
-- one) and returns it; raises FP404 when it does not exist and FP422 when the
-- result would have backoff_min_seconds above backoff_max_seconds.
CREATE FUNCTION update_subscription(
    p_id TEXT,
    p_max_delivery_attempts INTEGER,
    p_backoff_min_seconds INTEGER,
    p_backoff_max_seconds INTEGER,
    p_ack_deadline_seconds INTEGER
)
RETURNS subscriptions
LANGUAGE plpgsql
AS $$
DECLARE
    v_subscription subscriptions;
    v_max_delivery_attempts INTEGER;
    v_backoff_min_seconds INTEGER;
    v_backoff_max_seconds INTEGER;
    v_ack_deadline_seconds INTEGER;
BEGIN
    SELECT * INTO v_subscription FROM subscriptions WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Subscription not found' USING ERRCODE = 'FP404';
    END IF;
    v_max_delivery_attempts := coalesce(p_max_delivery_attempts, v_subscription.max_delivery_attempts);
    v_backoff_min_seconds := coalesce(p_backoff_min_seconds, v_subscription.backoff_min_seconds);
    v_backoff_max_seconds := coalesce(p_backoff_max_seconds, v_subscription.backoff_max_seconds);
    v_ack_deadline_seconds := coalesce(p_ack_deadline_seconds, v_subscription.ack_deadline_seconds);
    IF v_backoff_min_seconds > v_backoff_max_seconds THEN
        RAISE EXCEPTION 'backoff_min_seconds (%) must not be greater than backoff_max_seconds (%)',
            v_backoff_min_seconds, v_backoff_max_seconds
            USING ERRCODE = 'FP422';
    END IF;
    IF (v_max_delivery_attempts, v_backoff_min_seconds, v_backoff_max_seconds, v_ack_deadline_seconds)
        IS NOT DISTINCT FROM (v_subscription.max_delivery_attempts, v_subscription.backoff_min_seconds,
                              v_subscription.backoff_max_seconds, v_subscription.ack_deadline_seconds) THEN
        RETURN v_subscription;
    END IF;
    UPDATE subscriptions
    SET max_delivery_attempts = v_max_delivery_attempts,
        backoff_min_seconds = v_backoff_min_seconds,
        backoff_max_seconds = v_backoff_max_seconds,
        ack_deadline_seconds = v_ack_deadline_seconds
    WHERE key = v_subscription.key
    RETURNING * INTO v_subscription;
    RETURN v_subscription;
END;
$$;

-- consume_messages locks up to p_batch_size ready messages of a subscription to
-- one consumer, oldest first, skipping those other consumers hold, counts a
-- delivery attempt for each, and leases them for the subscription's
-- ack_deadline_seconds; raises FP404 for a missing subscription.
-- (Ids travel in arrays between statements so that every lookup is an index
-- lookup on the primary key, whatever the planner's statistics say.)
CREATE OR REPLACE FUNCTION consume_messages(p_subscription_id TEXT, p_consumer_id TEXT, p_batch_size INTEGER)
RETURNS TABLE (id BIGINT, payload JSON, delivery_attempts INTEGER, created_at TIMESTAMPTZ)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
    v_key BIGINT := v_subscription.key;
    v_ids BIGINT[];
BEGIN
    v_ids := ARRAY(
        SELECT m.id
        FROM messages AS m
        WHERE m.subscription_key = v_key AND m.locked_at IS NULL AND m.available_at <= now()
        ORDER BY m.available_at
        LIMIT p_batch_size
        FOR UPDATE SKIP LOCKED
    );
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO queue_counts (subscription_key, available, delivered) VALUES (v_key, -cardinality(v_ids), cardinality(v_ids));
    RETURN QUERY
    WITH delivered AS (
        UPDATE messages AS m
        SET locked_at = now(),
            available_at = now() + make_interval(secs => v_subscription.ack_deadline_seconds),
            consumer_id = p_consumer_id,
            delivery_attempts = m.delivery_attempts + 1
        WHERE m.subscription_key = v_key AND m.id = ANY (v_ids)
        RETURNING m.id, m.payload, m.delivery_attempts, m.created_at
    )
    SELECT d.id, d.payload, d.delivery_attempts, d.created_at FROM delivered AS d ORDER BY d.created_at, d.id;
END;
$$;

DROP FUNCTION ack_messages(TEXT, BIGINT[], INTEGER);

-- ack_messages deletes the given messages whose delivery is live (and, when
-- p_consumer_id is not null, held by that consumer) and counts them as acked;
-- other ids change nothing. Raises FP404 for a missing subscription.
CREATE FUNCTION ack_messages(p_subscription_id TEXT, p_message_ids BIGINT[], p_consumer_id TEXT)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_key BIGINT := (get_subscription(p_subscription_id)).key;
    v_acked INTEGER;
BEGIN
    DELETE FROM messages
    WHERE subscription_key = v_key
      AND id = ANY (p_message_ids)
      AND lease_live(locked_at, available_at, now())
      AND (p_consumer_id IS NULL OR consumer_id = p_consumer_id);
    GET DIAGNOSTICS v_acked = ROW_COUNT;
    IF v_acked > 0 THEN
        INSERT INTO queue_counts (subscription_key, delivered) VALUES (v_key, -v_acked);
        INSERT INTO acked_counts (subscription_key, acked) VALUES (v_key, v_acked);
    END IF;
    RETURN v_acked;
END;
$$;

DROP FUNCTION nack_messages(TEXT, BIGINT[], INTEGER);
DROP FUNCTION cleanup_stuck_messages(INTEGER);
DROP FUNCTION release_deliveries(subscriptions, BIGINT[]);

-- release_deliveries ends deliveries that failed: each message goes to the
-- dead-letter queue once it has used up the subscription's attempts, else
-- becomes available again after p_delay_seconds, or when that is NULL after the
-- backoff, min(backoff_max, backoff_min * 2^attempts) seconds. The caller has
-- locked the rows. Returns the number of messages released.
CREATE FUNCTION release_deliveries(p_subscription subscriptions, p_message_ids BIGINT[], p_delay_seconds INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_key BIGINT := p_subscription.key;
    v_dead BIGINT[];
    v_retried INTEGER;
BEGIN
    v_dead := ARRAY(
        SELECT id FROM messages
        WHERE subscription_key = v_key AND id = ANY (p_message_ids) AND delivered_since(locked_at, '-infinity')
          AND delivery_attempts >= p_subscription.max_delivery_attempts
        FOR UPDATE
    );
    IF cardinality(v_dead) > 0 THEN
        WITH buried AS (
            DELETE FROM messages
            WHERE subscription_key = v_key AND id = ANY (v_dead)
            RETURNING subscription_key, id, payload, delivery_attempts, created_at
        )
        INSERT INTO dead_letters (subscription_key, id, payload, delivery_attempts, created_at)
        SELECT * FROM buried;
    END IF;
    UPDATE messages
    SET locked_at = NULL,
        consumer_id = NULL,
        available_at = now() + make_interval(secs => coalesce(
            p_delay_seconds::DOUBLE PRECISION,
            least(
                p_subscription.backoff_max_seconds::DOUBLE PRECISION,
                p_subscription.backoff_min_seconds * power(2, least(delivery_attempts, 62))
            )
        ))
    WHERE subscription_key = v_key AND id = ANY (p_message_ids) AND delivered_since(locked_at, '-infinity')
      AND delivery_attempts < p_subscription.max_delivery_attempts;
    GET DIAGNOSTICS v_retried = ROW_COUNT;
    IF v_retried + cardinality(v_dead) > 0 THEN
        INSERT INTO queue_counts (subscription_key, available, delivered, dlq)
        VALUES (v_key, v_retried, -(v_retried + cardinality(v_dead)), cardinality(v_dead));
    END IF;
    RETURN v_retried + cardinality(v_dead);
END;
$$;

-- nack_messages releases the given messages whose delivery is live (and, when
-- p_consumer_id is not null, held by that consumer) as failed deliveries, ready
-- again after p_delay_seconds or, when that is NULL, after the backoff; other
-- ids change nothing. Raises FP404 for a missing subscription.
CREATE FUNCTION nack_messages(p_subscription_id TEXT, p_message_ids BIGINT[], p_consumer_id TEXT, p_delay_seconds INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
BEGIN
    -- Locked here, so that the lease expiry cannot release them in between.
    RETURN release_deliveries(v_subscription, ARRAY(
        SELECT id FROM messages
        WHERE subscription_key = v_subscription.key
          AND id = ANY (p_message_ids)
          AND lease_live(locked_at, available_at, now())
          AND (p_consumer_id IS NULL OR consumer_id = p_consumer_id)
        FOR UPDATE
    ), p_delay_seconds);
END;
$$;

-- modify_ack_deadline moves the lease end of the given live deliveries (held by
-- p_consumer_id, when not null) to p_ack_deadline_seconds from now, or with 0
-- releases them at once as failed deliveries, without backoff; other ids change
-- nothing. Raises FP404 for a missing subscription. Returns how many it changed.
CREATE FUNCTION modify_ack_deadline(p_subscription_id TEXT, p_message_ids BIGINT[], p_consumer_id TEXT, p_ack_deadline_seconds INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
    v_extended INTEGER;
BEGIN
    IF p_ack_deadline_seconds = 0 THEN
        RETURN release_deliveries(v_subscription, ARRAY(
            SELECT id FROM messages
            WHERE subscription_key = v_subscription.key
              AND id = ANY (p_message_ids)
              AND lease_live(locked_at, available_at, now())
              AND (p_consumer_id IS NULL OR consumer_id = p_consumer_id)
            FOR UPDATE
        ), 0);
    END IF;
    UPDATE messages
    SET available_at = now() + make_interval(secs => p_ack_deadline_seconds)
    WHERE subscription_key = v_subscription.key
      AND id = ANY (p_message_ids)
      AND lease_live(locked_at, available_at, now())
      AND (p_consumer_id IS NULL OR consumer_id = p_consumer_id);
    GET DIAGNOSTICS v_extended = ROW_COUNT;
    RETURN v_extended;
END;
$$;

-- expire_leases releases, as failed deliveries (backoff, or the dead-letter
-- queue), up to p_limit deliveries whose lease has ended, across every
-- subscription; safe to run from several servers at once. Returns how many.
-- (A sweep that runs every second gives up after a second behind a table lock,
-- rather than hold a connection, or a server's shutdown, for the statement timeout.)
CREATE FUNCTION expire_leases(p_limit INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
SET lock_timeout = '1s'
AS $$
DECLARE
    v_subscription subscriptions;
    v_ids BIGINT[];
    v_released INTEGER := 0;
BEGIN
    -- Only the subscriptions with deliveries out: a skip scan of the leases index, one probe
    -- each, so the sweep's cost follows the deliveries, not the number of subscriptions.
    FOR v_subscription IN
        WITH RECURSIVE delivering (key) AS (
            SELECT (SELECT m.subscription_key FROM messages AS m WHERE m.locked_at IS NOT NULL ORDER BY m.subscription_key LIMIT 1)
            UNION ALL
            SELECT (
                SELECT m.subscription_key FROM messages AS m
                WHERE m.locked_at IS NOT NULL AND m.subscription_key > d.key
                ORDER BY m.subscription_key LIMIT 1
            )
            FROM delivering AS d
            WHERE d.key IS NOT NULL
        )
        SELECT s.* FROM delivering AS d JOIN subscriptions AS s ON s.key = d.key ORDER BY s.key
    LOOP
        EXIT WHEN v_released >= p_limit;
        v_ids := ARRAY(
            SELECT id FROM messages
            WHERE subscription_key = v_subscription.key
              AND locked_at IS NOT NULL
              AND available_at <= now()
            ORDER BY available_at
            LIMIT p_limit - v_released
            FOR UPDATE SKIP LOCKED
        );
        IF cardinality(v_ids) > 0 THEN
            v_released := v_released + release_deliveries(v_subscription, v_ids, NULL);
        END IF;
    END LOOP;
    RETURN v_released;
END;
$$;

-- cleanup_stuck_messages releases, as failed deliveries, the messages locked
-- longer than p_lock_timeout_seconds, whatever their lease; safe to run from
-- several servers at once. Returns the number released.
CREATE FUNCTION cleanup_stuck_messages(p_lock_timeout_seconds INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_subscription subscriptions;
    v_released INTEGER := 0;
BEGIN
    FOR v_subscription IN SELECT * FROM subscriptions ORDER BY key LOOP
        v_released := v_released + release_deliveries(v_subscription, ARRAY(
            SELECT id FROM messages
            WHERE subscription_key = v_subscription.key
              AND locked_at IS NOT NULL
              AND locked_at <= now() - make_interval(secs => p_lock_timeout_seconds)
            FOR UPDATE SKIP LOCKED
        ), NULL);
    END LOOP;
    RETURN v_released;
END;
$$;
