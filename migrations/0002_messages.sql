-- Messages: publish with filters, consume with locking, ack/nack with backoff,
-- a dead-letter queue, exact counts without scans, and the cleanup work.
--
-- Layout (chosen with the benchmark, see DESIGN.md):
-- * one row per message per subscription in `messages`, keyed by the
--   subscription's internal bigint key and a bigint id from one sequence; the
--   API shows the id as a UUID (see src/db/message-ids.ts);
-- * payloads stored as `json`, the text as published: no jsonb conversion on the
--   way in or out, and the filter reads only the keys it names;
-- * an acked message is deleted at once; dead letters move to `dead_letters`;
-- * counts are kept as appended deltas (`queue_counts`, `acked_counts`), so no
--   hot-path statement updates a shared row, and the maintenance folds them up;
-- * no foreign key from messages (a per-row check on the hot path): publish takes
--   a shared advisory lock on its topic, and deleting a topic or subscription
--   takes it exclusively before removing their messages.

ALTER TABLE subscriptions ADD COLUMN key BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE;

CREATE SEQUENCE message_ids CACHE 100;

CREATE TABLE messages (
    subscription_key BIGINT NOT NULL,
    id BIGINT NOT NULL DEFAULT nextval('message_ids'),
    payload JSON NOT NULL,
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_at TIMESTAMPTZ,
    consumer_id TEXT, -- who holds the delivery, for operators (the API acks and nacks by id)
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The id leads, so that a batch of ids is always found by index lookups
    -- (id = ANY (...)), however stale the planner's statistics.
    PRIMARY KEY (id, subscription_key)
);

-- Ready messages in the order consume takes them. The messages of one publish
-- share their available_at, so B-tree deduplication keeps this index small: a
-- unique key per message (adding id, or microseconds) costs ~30 % of throughput.
CREATE INDEX messages_ready_idx ON messages (subscription_key, available_at) WHERE locked_at IS NULL;
-- Deliveries, for finding the ones whose lock expired.
CREATE INDEX messages_locked_idx ON messages (subscription_key, locked_at) WHERE locked_at IS NOT NULL;

CREATE TABLE dead_letters (
    subscription_key BIGINT NOT NULL,
    id BIGINT NOT NULL,
    payload JSON NOT NULL,
    delivery_attempts INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    dead_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, subscription_key)
);

CREATE INDEX dead_letters_created_at_idx ON dead_letters (subscription_key, created_at, id);

-- Changes to a subscription's available, delivered and dead-lettered counts.
CREATE TABLE queue_counts (
    subscription_key BIGINT NOT NULL,
    available BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0,
    dlq BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX queue_counts_subscription_key_idx ON queue_counts (subscription_key);

-- The counts of each subscription that has any: the sums of its deltas.
CREATE VIEW queue_totals AS
SELECT subscription_key, sum(available)::BIGINT AS available, sum(delivered)::BIGINT AS delivered, sum(dlq)::BIGINT AS dlq
FROM queue_counts
GROUP BY subscription_key;

-- Acknowledgements, counted per call until cleanup_acked_messages drops them.
CREATE TABLE acked_counts (
    subscription_key BIGINT NOT NULL,
    acked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    acked BIGINT NOT NULL
);

CREATE INDEX acked_counts_subscription_key_idx ON acked_counts (subscription_key, acked_at);

-- filter_matches tells whether a payload passes a subscription filter: for every
-- key the payload has, its value's text must equal one of the key's values' text.
CREATE FUNCTION filter_matches(p_filter JSONB, p_payload JSON)
RETURNS BOOLEAN
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT p_filter IS NULL OR NOT EXISTS (
        SELECT 1
        FROM jsonb_each(p_filter) AS f (key, allowed)
        WHERE p_payload ->> f.key IS NOT NULL
          AND NOT (p_payload ->> f.key = ANY (ARRAY(SELECT jsonb_array_elements_text(f.allowed))))
    );
$$;

-- publish_messages routes each payload of a JSON array to every subscription of
-- the topic whose filter it matches; raises FP404 for a missing topic. Returns
-- the number of rows routed.
CREATE FUNCTION publish_messages(p_topic_id TEXT, p_messages JSON)
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_routed INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_topic_id, 0));
    PERFORM get_topic(p_topic_id);
    WITH routed AS (
        INSERT INTO messages (subscription_key, payload)
        SELECT s.key, m.payload
        FROM subscriptions AS s
        CROSS JOIN json_array_elements(p_messages) WITH ORDINALITY AS m (payload, position)
        WHERE s.topic_id = p_topic_id
          AND (s.filter IS NULL OR filter_matches(s.filter, m.payload))
        ORDER BY s.key, m.position
        RETURNING subscription_key
    ),
    counted AS (
        INSERT INTO queue_counts (subscription_key, available)
        SELECT subscription_key, count(*) FROM routed GROUP BY subscription_key
        RETURNING available
    )
    SELECT coalesce(sum(available), 0) INTO v_routed FROM counted;
    RETURN v_routed;
END;
$$;

-- consume_messages locks up to p_batch_size ready messages of a subscription to
-- one consumer, oldest first, skipping those other consumers hold, and counts a
-- delivery attempt for each; raises FP404 for a missing subscription.
-- (Ids travel in arrays between statements so that every lookup is an index
-- lookup on the primary key, whatever the planner's statistics say.)
CREATE FUNCTION consume_messages(p_subscription_id TEXT, p_consumer_id TEXT, p_batch_size INTEGER)
RETURNS TABLE (id BIGINT, payload JSON, delivery_attempts INTEGER, created_at TIMESTAMPTZ)
LANGUAGE plpgsql
AS $$
DECLARE
    v_key BIGINT := (get_subscription(p_subscription_id)).key;
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
        SET locked_at = now(), consumer_id = p_consumer_id, delivery_attempts = m.delivery_attempts + 1
        WHERE m.subscription_key = v_key AND m.id = ANY (v_ids)
        RETURNING m.id, m.payload, m.delivery_attempts, m.created_at
    )
    SELECT d.id, d.payload, d.delivery_attempts, d.created_at FROM delivered AS d ORDER BY d.created_at, d.id;
END;
$$;

-- ack_messages deletes the given messages that are delivered to a live consumer
-- (locked less than p_lock_timeout_seconds ago) and counts them as acked; other
-- ids change nothing. Raises FP404 for a missing subscription.
CREATE FUNCTION ack_messages(p_subscription_id TEXT, p_message_ids BIGINT[], p_lock_timeout_seconds INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_key BIGINT := (get_subscription(p_subscription_id)).key;
    v_acked INTEGER;
BEGIN
    DELETE FROM messages
    WHERE subscription_key = v_key
      AND id = ANY (p_message_ids)
      AND locked_at + make_interval(secs => p_lock_timeout_seconds) > now();
    GET DIAGNOSTICS v_acked = ROW_COUNT;
    IF v_acked > 0 THEN
        INSERT INTO queue_counts (subscription_key, delivered) VALUES (v_key, -v_acked);
        INSERT INTO acked_counts (subscription_key, acked) VALUES (v_key, v_acked);
    END IF;
    RETURN v_acked;
END;
$$;

-- release_deliveries ends deliveries that failed: each message goes to the
-- dead-letter queue once it has used up the subscription's attempts, else
-- becomes available again after min(backoff_max, backoff_min * 2^attempts)
-- seconds. Returns the number of messages released.
CREATE FUNCTION release_deliveries(p_subscription subscriptions, p_message_ids BIGINT[])
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_key BIGINT := p_subscription.key;
    v_dead BIGINT[];
    v_retried INTEGER;
BEGIN
    v_dead := ARRAY(
        SELECT id FROM messages
        WHERE subscription_key = v_key AND id = ANY (p_message_ids) AND locked_at IS NOT NULL
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
        available_at = now() + make_interval(secs => least(
            p_subscription.backoff_max_seconds::DOUBLE PRECISION,
            p_subscription.backoff_min_seconds * power(2, least(delivery_attempts, 62))
        ))
    WHERE subscription_key = v_key AND id = ANY (p_message_ids) AND locked_at IS NOT NULL
      AND delivery_attempts < p_subscription.max_delivery_attempts;
    GET DIAGNOSTICS v_retried = ROW_COUNT;
    IF v_retried + cardinality(v_dead) > 0 THEN
        INSERT INTO queue_counts (subscription_key, available, delivered, dlq)
        VALUES (v_key, v_retried, -(v_retried + cardinality(v_dead)), cardinality(v_dead));
    END IF;
    RETURN v_retried + cardinality(v_dead);
END;
$$;

-- nack_messages releases the given messages that are delivered to a live
-- consumer, as failed deliveries; other ids change nothing. Raises FP404 for a
-- missing subscription.
CREATE FUNCTION nack_messages(p_subscription_id TEXT, p_message_ids BIGINT[], p_lock_timeout_seconds INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
BEGIN
    -- Locked here, so that the stuck-message cleanup cannot release them in between.
    RETURN release_deliveries(v_subscription, ARRAY(
        SELECT id FROM messages
        WHERE subscription_key = v_subscription.key
          AND id = ANY (p_message_ids)
          AND locked_at + make_interval(secs => p_lock_timeout_seconds) > now()
        FOR UPDATE
    ));
END;
$$;

-- list_dlq_messages returns a page of a subscription's dead letters, oldest first.
CREATE FUNCTION list_dlq_messages(p_subscription_id TEXT, p_offset INTEGER, p_limit INTEGER)
RETURNS TABLE (id BIGINT, payload JSON, delivery_attempts INTEGER, created_at TIMESTAMPTZ)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_key BIGINT := (get_subscription(p_subscription_id)).key;
BEGIN
    RETURN QUERY
    SELECT d.id, d.payload, d.delivery_attempts, d.created_at
    FROM dead_letters AS d
    WHERE d.subscription_key = v_key
    ORDER BY d.created_at, d.id
    OFFSET p_offset
    LIMIT p_limit;
END;
$$;

-- reprocess_dlq_messages moves the given dead letters back to the queue, ready
-- now, with their delivery attempts reset; other ids change nothing.
CREATE FUNCTION reprocess_dlq_messages(p_subscription_id TEXT, p_message_ids BIGINT[])
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
    v_key BIGINT := v_subscription.key;
    v_revived INTEGER;
BEGIN
    -- Like publish: no message may outlive a subscription being deleted.
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(v_subscription.topic_id, 0));
    WITH revived AS (
        DELETE FROM dead_letters
        WHERE subscription_key = v_key AND id = ANY (p_message_ids)
        RETURNING subscription_key, id, payload, created_at
    ),
    queued AS (
        INSERT INTO messages (subscription_key, id, payload, created_at)
        SELECT subscription_key, id, payload, created_at FROM revived
        RETURNING 1
    ),
    counted AS (
        INSERT INTO queue_counts (subscription_key, available, dlq)
        SELECT v_key, count(*), -count(*) FROM queued HAVING count(*) > 0
        RETURNING available
    )
    SELECT coalesce(sum(available), 0) INTO v_revived FROM counted;
    RETURN v_revived;
END;
$$;

-- get_subscription_metrics counts a subscription's messages by state from the
-- count deltas, without reading the messages.
CREATE FUNCTION get_subscription_metrics(p_subscription_id TEXT)
RETURNS TABLE (available BIGINT, delivered BIGINT, acked BIGINT, dlq BIGINT)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_key BIGINT := (get_subscription(p_subscription_id)).key;
BEGIN
    RETURN QUERY
    SELECT
        coalesce(t.available, 0),
        coalesce(t.delivered, 0),
        (SELECT coalesce(sum(a.acked), 0) FROM acked_counts AS a WHERE a.subscription_key = v_key)::BIGINT,
        coalesce(t.dlq, 0)
    FROM (SELECT v_key AS subscription_key) AS s
    LEFT JOIN queue_totals AS t USING (subscription_key);
END;
$$;

-- cleanup_stuck_messages releases, as failed deliveries, the messages locked
-- longer than p_lock_timeout_seconds; safe to run from several servers at once.
-- Returns the number released.
CREATE FUNCTION cleanup_stuck_messages(p_lock_timeout_seconds INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
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
        ));
    END LOOP;
    RETURN v_released;
END;
$$;

-- cleanup_acked_messages forgets the acknowledgements older than
-- p_older_than_seconds, so they no longer count as acked. Returns how many it forgot.
CREATE FUNCTION cleanup_acked_messages(p_older_than_seconds INTEGER)
RETURNS BIGINT
LANGUAGE sql
AS $$
    WITH forgotten AS (
        DELETE FROM acked_counts
        WHERE acked_at < now() - make_interval(secs => p_older_than_seconds)
        RETURNING acked
    )
    SELECT coalesce(sum(acked), 0)::BIGINT FROM forgotten;
$$;

-- compact_counts folds each subscription's count deltas into one row, and its
-- acknowledgements into one row per minute. Safe to run from several servers at once.
CREATE FUNCTION compact_counts()
RETURNS VOID
LANGUAGE sql
AS $$
    WITH folded AS (
        DELETE FROM queue_counts RETURNING subscription_key, available, delivered, dlq
    )
    INSERT INTO queue_counts (subscription_key, available, delivered, dlq)
    SELECT subscription_key, sum(available), sum(delivered), sum(dlq)
    FROM folded
    GROUP BY subscription_key;

    WITH folded AS (
        DELETE FROM acked_counts RETURNING subscription_key, acked_at, acked
    )
    INSERT INTO acked_counts (subscription_key, acked_at, acked)
    SELECT subscription_key, max(acked_at), sum(acked)
    FROM folded
    GROUP BY subscription_key, date_trunc('minute', acked_at);
$$;

-- forget_subscriptions deletes the messages, dead letters and counts of the
-- subscriptions with the given keys.
CREATE FUNCTION forget_subscriptions(p_keys BIGINT[])
RETURNS VOID
LANGUAGE sql
AS $$
    DELETE FROM messages WHERE subscription_key = ANY (p_keys) AND locked_at IS NULL;
    DELETE FROM messages WHERE subscription_key = ANY (p_keys) AND locked_at IS NOT NULL;
    DELETE FROM dead_letters WHERE subscription_key = ANY (p_keys);
    DELETE FROM queue_counts WHERE subscription_key = ANY (p_keys);
    DELETE FROM acked_counts WHERE subscription_key = ANY (p_keys);
$$;

-- delete_topic deletes a topic with its subscriptions and their messages, or raises FP404.
CREATE OR REPLACE FUNCTION delete_topic(p_id TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_id, 0));
    PERFORM forget_subscriptions(ARRAY(SELECT key FROM subscriptions WHERE topic_id = p_id));
    DELETE FROM topics WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Topic not found' USING ERRCODE = 'FP404';
    END IF;
END;
$$;

-- delete_subscription deletes a subscription and its messages, or raises FP404.
CREATE OR REPLACE FUNCTION delete_subscription(p_id TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_id);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(v_subscription.topic_id, 0));
    DELETE FROM subscriptions WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Subscription not found' USING ERRCODE = 'FP404';
    END IF;
    PERFORM forget_subscriptions(ARRAY[v_subscription.key]);
END;
$$;
