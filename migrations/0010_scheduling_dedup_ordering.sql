-- Delayed publish, de-duplicated topics and ordered subscriptions.
--
-- Delayed publish: a delayed message is stored at once with available_at set to its time. It is
-- counted in `available` (like a message waiting out a backoff) and no consume finds it before then:
-- consume, the waiters' check and the ready index already key on available_at.
--
-- De-duplication: a topic with a dedup_key keeps, in dedup_keys, a digest of each value of that
-- payload key published within its window. Publish claims the values of its batch with one
-- INSERT ... ON CONFLICT in digest order, so concurrent publishers (on any server) queue on the unique
-- index, never deadlock, and exactly one of them publishes a value. The maintenance deletes the
-- expired claims; an expired claim that is still there is taken over by the next publish of its value.
--
-- Ordering: a subscription with an ordering_key stores with each message a 64-bit hash of the
-- message's value for that key (messages.ordering_hash; 0 for a message without the key, NULL on
-- unordered subscriptions, so that they keep every statement and index entry they had). A hash
-- collision only makes two values share one order. The messages of one value are ordered by
-- (created_at, id): one publish's messages share created_at and take their ids from the sequence in
-- array order, on one connection. The head of a value is its first message still queued; it is the
-- only one of its value that consume may deliver, and only when ready and not delivered. So a nacked
-- or expired head blocks its value until it is delivered again and acked, and a dead-lettered head
-- leaves the table and unblocks it: ack and nack keep no other bookkeeping.
-- Consume finds the ready heads by a skip scan of messages_ordering_idx, one probe per value, from a
-- random hash onwards (so that no value is always served first), and stops once its batch is full:
-- its cost follows the number of values with queued messages that it walks, never the backlog's
-- depth. Messages without the key have an index of their own, so they never queue behind keyed ones.
-- dead_letters has an ordering_hash column too: the functions that move messages to the dead-letter
-- queue and back must carry it, so that a reprocessed message of an ordered subscription keeps its
-- place (a message of an ordered subscription with a NULL ordering_hash is found by no consume).

ALTER TABLE topics
    ADD COLUMN dedup_key TEXT,
    ADD COLUMN dedup_window_seconds INTEGER CHECK (dedup_window_seconds BETWEEN 1 AND 86400),
    ADD CONSTRAINT topics_dedup_window_with_key CHECK ((dedup_key IS NULL) = (dedup_window_seconds IS NULL));

ALTER TABLE subscriptions ADD COLUMN ordering_key TEXT;

ALTER TABLE messages ADD COLUMN ordering_hash BIGINT;
ALTER TABLE dead_letters ADD COLUMN ordering_hash BIGINT;

-- The messages of each ordering value in order, delivered ones included: the first is the head.
CREATE INDEX messages_ordering_idx ON messages (subscription_key, ordering_hash, created_at, id) WHERE ordering_hash <> 0;
-- Messages without an ordering value on ordered subscriptions, by when they are ready (delivered
-- ones by the end of their lease). Their statements test "not delivered" as NOT delivered_since(),
-- from which the planner can prove no index predicate: this index is the only one they can use,
-- never the ready index, where the keyed messages of the subscription would be walked past too.
CREATE INDEX messages_unkeyed_idx ON messages (subscription_key, available_at) WHERE ordering_hash = 0;

-- The values of de-duplicated topics' keys published within their window, by digest (a value may
-- be as long as a payload, more than an index entry can hold).
CREATE TABLE dedup_keys (
    topic_id TEXT NOT NULL,
    value_hash UUID NOT NULL, -- the MD5 of the value's text form: anyone who can publish a value can publish it first anyway
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic_id, value_hash)
);

CREATE INDEX dedup_keys_expires_at_idx ON dedup_keys (expires_at);

-- payload_key_text returns the text form of a payload's top-level value for a key, as filters
-- compare it, from the payload or, when given, from its text forms (see filter_matches_text_forms);
-- NULL when the payload lacks the key, holds null there, or a string PostgreSQL cannot read.
CREATE FUNCTION payload_key_text(p_payload JSON, p_text_forms JSONB, p_key TEXT)
RETURNS TEXT
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_text_forms IS NULL THEN p_payload ->> p_key ELSE p_text_forms -> p_key ->> 0 END;
$$;

-- ordering_hash_of returns the ordering hash of a payload's ordering value: 0 for none, never 0 for one.
CREATE FUNCTION ordering_hash_of(p_value TEXT)
RETURNS BIGINT
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_value IS NULL THEN 0 ELSE coalesce(nullif(hashtextextended(p_value, 0), 0), 1) END;
$$;

DROP FUNCTION create_topic(TEXT);

-- create_topic inserts a topic, de-duplicated by p_dedup_key within p_dedup_window_seconds when
-- that is given, or raises FP409 when the id is taken.
CREATE FUNCTION create_topic(p_id TEXT, p_dedup_key TEXT DEFAULT NULL, p_dedup_window_seconds INTEGER DEFAULT NULL)
RETURNS topics
LANGUAGE plpgsql
AS $$
DECLARE
    v_topic topics;
BEGIN
    INSERT INTO topics (id, dedup_key, dedup_window_seconds) VALUES (p_id, p_dedup_key, p_dedup_window_seconds)
    ON CONFLICT (id) DO NOTHING
    RETURNING * INTO v_topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'This topic already exists' USING ERRCODE = 'FP409';
    END IF;
    RETURN v_topic;
END;
$$;

-- delete_topic deletes a topic with its subscriptions, their messages and its de-duplication claims, or raises FP404.
CREATE OR REPLACE FUNCTION delete_topic(p_id TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_id, 0));
    PERFORM forget_subscriptions(ARRAY(SELECT key FROM subscriptions WHERE topic_id = p_id));
    DELETE FROM dedup_keys WHERE topic_id = p_id;
    DELETE FROM topics WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Topic not found' USING ERRCODE = 'FP404';
    END IF;
END;
$$;

DROP FUNCTION create_subscription(TEXT, TEXT, JSONB, INTEGER, INTEGER, INTEGER, INTEGER);

-- create_subscription subscribes to a topic, ordered by p_ordering_key when that is given; it
-- raises FP409 when the id is taken and FP404 when the topic does not exist.
CREATE FUNCTION create_subscription(
    p_id TEXT,
    p_topic_id TEXT,
    p_filter JSONB,
    p_max_delivery_attempts INTEGER,
    p_backoff_min_seconds INTEGER,
    p_backoff_max_seconds INTEGER,
    p_ack_deadline_seconds INTEGER,
    p_ordering_key TEXT DEFAULT NULL
)
RETURNS subscriptions
LANGUAGE plpgsql
AS $$
DECLARE
    v_subscription subscriptions;
BEGIN
    INSERT INTO subscriptions (id, topic_id, filter, max_delivery_attempts, backoff_min_seconds, backoff_max_seconds, ack_deadline_seconds, ordering_key)
    VALUES (p_id, p_topic_id, p_filter, p_max_delivery_attempts, p_backoff_min_seconds, p_backoff_max_seconds, p_ack_deadline_seconds, p_ordering_key)
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

-- claim_dedup_keys claims, for a topic with a dedup_key, the key values of a batch of payloads
-- for the topic's window, and returns the positions (from 1) of the payloads to publish: those
-- without the key, and the first of each value that no claim within its window holds.
CREATE FUNCTION claim_dedup_keys(p_topic topics, p_messages JSON, p_text_forms JSONB)
RETURNS BIGINT[]
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_kept BIGINT[];
BEGIN
    WITH keyed AS (
        SELECT m.position,
               md5(payload_key_text(m.payload, p_text_forms -> (m.position::INTEGER - 1), p_topic.dedup_key))::UUID AS value_hash
        FROM json_array_elements(p_messages) WITH ORDINALITY AS m (payload, position)
    ),
    firsts AS (
        SELECT DISTINCT ON (k.value_hash) k.position, k.value_hash
        FROM keyed AS k
        WHERE k.value_hash IS NOT NULL
        ORDER BY k.value_hash, k.position
    ),
    claimed AS (
        -- In digest order, so that two publishes of the same values wait for each other, never deadlock.
        INSERT INTO dedup_keys (topic_id, value_hash, expires_at)
        SELECT p_topic.id, f.value_hash, now() + make_interval(secs => p_topic.dedup_window_seconds)
        FROM firsts AS f
        ORDER BY f.value_hash
        ON CONFLICT (topic_id, value_hash) DO UPDATE SET expires_at = excluded.expires_at
        WHERE dedup_keys.expires_at <= now()
        RETURNING value_hash
    )
    SELECT ARRAY(
        SELECT k.position FROM keyed AS k WHERE k.value_hash IS NULL
        UNION ALL
        SELECT f.position FROM firsts AS f JOIN claimed AS c USING (value_hash)
    ) INTO v_kept;
    RETURN v_kept;
END;
$$;

DROP FUNCTION publish_messages(TEXT, JSON, JSONB);

-- publish_messages routes each payload of a JSON array to every subscription of the topic whose
-- filter it matches, ready at p_available_at (now when NULL), and drops, on a de-duplicated topic,
-- the payloads whose key value was published within the window; raises FP404 for a missing topic.
-- Returns the number of rows routed. p_text_forms, when given, holds the text forms of each
-- payload's top-level values (see filter_matches_text_forms), in order, and the filters, the
-- de-duplication and the ordering read them instead of the payloads.
CREATE FUNCTION publish_messages(p_topic_id TEXT, p_messages JSON, p_text_forms JSONB DEFAULT NULL, p_available_at TIMESTAMPTZ DEFAULT NULL)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_topic topics;
    v_kept BIGINT[];
    v_routed INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_topic_id, 0));
    v_topic := get_topic(p_topic_id);
    IF v_topic.dedup_key IS NOT NULL THEN
        v_kept := claim_dedup_keys(v_topic, p_messages, p_text_forms);
    END IF;
    WITH routed AS (
        INSERT INTO messages (subscription_key, payload, available_at, ordering_hash)
        SELECT s.key, m.payload, coalesce(p_available_at, now()), CASE
            WHEN s.ordering_key IS NOT NULL
            THEN ordering_hash_of(payload_key_text(m.payload, p_text_forms -> (m.position::INTEGER - 1), s.ordering_key))
        END
        FROM subscriptions AS s
        CROSS JOIN json_array_elements(p_messages) WITH ORDINALITY AS m (payload, position)
        WHERE s.topic_id = p_topic_id
          AND (v_kept IS NULL OR m.position = ANY (v_kept))
          AND (s.filter IS NULL OR CASE
              WHEN p_text_forms IS NULL THEN filter_matches(s.filter, m.payload)
              ELSE filter_matches_text_forms(s.filter, p_text_forms -> (m.position::INTEGER - 1))
          END)
        -- The ids follow this order: the messages of one value are ordered by (created_at, id).
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

-- ordered_heads returns up to p_limit ids of an ordered subscription's ready heads (the first
-- queued message of an ordering value, when it is neither delivered nor waiting for its time),
-- walking the values whose hash is within [p_from, p_to] upwards, one index probe per value.
CREATE FUNCTION ordered_heads(p_subscription_key BIGINT, p_from BIGINT, p_to BIGINT, p_limit INTEGER)
RETURNS SETOF BIGINT
LANGUAGE sql
STABLE
SET enable_seqscan = off
AS $$
    WITH RECURSIVE heads (hash, id, ready) AS (
        (
            SELECT m.ordering_hash, m.id, m.locked_at IS NULL AND m.available_at <= now()
            FROM messages AS m
            WHERE m.subscription_key = p_subscription_key AND m.ordering_hash <> 0
              AND m.ordering_hash >= p_from AND m.ordering_hash <= p_to
            ORDER BY m.ordering_hash, m.created_at, m.id
            LIMIT 1
        )
        UNION ALL
        SELECT n.*
        FROM heads AS h
        CROSS JOIN LATERAL (
            SELECT m.ordering_hash, m.id, m.locked_at IS NULL AND m.available_at <= now()
            FROM messages AS m
            WHERE m.subscription_key = p_subscription_key AND m.ordering_hash <> 0
              AND m.ordering_hash > h.hash AND m.ordering_hash <= p_to
            ORDER BY m.ordering_hash, m.created_at, m.id
            LIMIT 1
        ) AS n
    )
    -- The walk is lazy: it stops at the p_limit-th ready head.
    SELECT h.id FROM heads AS h WHERE h.ready LIMIT p_limit;
$$;

-- lock_ordered_messages locks up to p_limit ready messages of an ordered subscription that
-- consume may deliver: heads of their ordering value, and messages without one; oldest first,
-- skipping those other consumers hold.
CREATE FUNCTION lock_ordered_messages(p_subscription_key BIGINT, p_limit INTEGER)
RETURNS BIGINT[]
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    -- A random start, so that the values at the low end of the hashes are not always served first.
    v_pivot BIGINT := (floor(random() * 4294967296) - 2147483648)::BIGINT * 4294967296;
    v_candidates BIGINT[];
BEGIN
    v_candidates := ARRAY(SELECT ordered_heads(p_subscription_key, v_pivot, 9223372036854775807, p_limit));
    IF cardinality(v_candidates) < p_limit AND v_pivot > -9223372036854775808 THEN
        v_candidates := v_candidates
            || ARRAY(SELECT ordered_heads(p_subscription_key, -9223372036854775808, v_pivot - 1, p_limit - cardinality(v_candidates)));
    END IF;
    v_candidates := v_candidates || ARRAY(
        SELECT m.id
        FROM messages AS m
        WHERE m.subscription_key = p_subscription_key AND m.ordering_hash = 0 AND m.available_at <= now()
          AND NOT delivered_since(m.locked_at, '-infinity')
        ORDER BY m.available_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    );
    IF cardinality(v_candidates) = 0 THEN
        RETURN v_candidates;
    END IF;
    -- A head that another consumer delivered meanwhile is locked (skipped) or no longer ready.
    -- (By primary key only: with "locked_at IS NULL" the planner could walk the ready index instead.)
    RETURN ARRAY(
        SELECT m.id
        FROM messages AS m
        WHERE m.subscription_key = p_subscription_key AND m.id = ANY (v_candidates)
          AND NOT delivered_since(m.locked_at, '-infinity') AND m.available_at <= now()
        ORDER BY m.available_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    );
END;
$$;

-- consume_messages locks up to p_batch_size ready messages of a subscription to
-- one consumer, oldest first, skipping those other consumers hold (and, on an
-- ordered subscription, those whose ordering value has an earlier message
-- queued), counts a delivery attempt for each, and leases them for the
-- subscription's ack_deadline_seconds; raises FP404 for a missing subscription.
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
    IF v_subscription.ordering_key IS NULL THEN
        v_ids := ARRAY(
            SELECT m.id
            FROM messages AS m
            WHERE m.subscription_key = v_key AND m.locked_at IS NULL AND m.available_at <= now()
            ORDER BY m.available_at
            LIMIT p_batch_size
            FOR UPDATE SKIP LOCKED
        );
    ELSE
        v_ids := lock_ordered_messages(v_key, p_batch_size);
    END IF;
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

-- ready_subscriptions returns those of the given subscriptions that have a message
-- ready to be consumed (one lookup each in the ready index; on an ordered
-- subscription, a ready message without an ordering value or a ready head), or
-- that no longer exist (their waiters then learn it from their next statement).
CREATE OR REPLACE FUNCTION ready_subscriptions(p_subscription_ids TEXT[])
RETURNS SETOF TEXT
LANGUAGE sql
STABLE
SET enable_seqscan = off
AS $$
    SELECT w.id
    FROM unnest(p_subscription_ids) AS w (id)
    LEFT JOIN subscriptions AS s ON s.id = w.id
    WHERE s.key IS NULL
       OR (s.ordering_key IS NULL AND EXISTS (
           SELECT 1 FROM messages AS m
           WHERE m.subscription_key = s.key AND m.locked_at IS NULL AND m.available_at <= now()
       ))
       OR (s.ordering_key IS NOT NULL AND (
           EXISTS (
               SELECT 1 FROM messages AS m
               WHERE m.subscription_key = s.key AND m.ordering_hash = 0 AND m.available_at <= now()
                 AND NOT delivered_since(m.locked_at, '-infinity')
           )
           OR EXISTS (SELECT 1 FROM ordered_heads(s.key, -9223372036854775808, 9223372036854775807, 1))
       ));
$$;

-- forget_expired_dedup_keys deletes up to p_limit de-duplication claims whose window has ended;
-- safe to run from several servers at once. Returns how many.
CREATE FUNCTION forget_expired_dedup_keys(p_limit INTEGER)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_forgotten INTEGER;
BEGIN
    WITH expired AS (
        SELECT d.topic_id, d.value_hash
        FROM dedup_keys AS d
        WHERE d.expires_at <= now()
        ORDER BY d.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM dedup_keys AS d
    USING expired AS e
    WHERE d.topic_id = e.topic_id AND d.value_hash = e.value_hash;
    GET DIAGNOSTICS v_forgotten = ROW_COUNT;
    RETURN v_forgotten;
END;
$$;
