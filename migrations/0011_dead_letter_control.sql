-- Dead-letter control: why and when each message died, a nack straight to the dead-letter
-- queue, reprocess and purge of every dead letter in batches, and the counts /metrics shows
-- (dead letters by reason, delayed messages).
--
-- Each dead letter keeps its reason: "max_delivery_attempts" (a nack, or a ModifyAckDeadline
-- of 0, used up its attempts), "lease_expired" (its last attempt's lease ended: expire_leases
-- or cleanup_stuck_messages), or the reason of a nack with dead_letter ("nacked" when it gave
-- none). dead_at, which the table had from the start, is when it died. Dead letters made
-- before this migration all used up their attempts.
--
-- Dead letters given by id are found by primary key only: with statistics that saw few
-- dead letters, the planner read all of a subscription's in dead_letters_created_at_idx
-- and filtered by id, so the statements compare `subscription_key + 0`, which no index serves.
--
-- Rows move between the two tables in two functions only, each with its column lists:
-- bury_messages (messages → dead_letters) and revive_dead_letters (dead_letters → messages).
--
-- Dead letters are counted by reason as deltas (dead_letter_counts, folded by compact_counts
-- like queue_counts), under a label of bounded cardinality: the two reasons the server gives,
-- and "nacked" for every reason a nack gives.
--
-- Reprocess and purge of all dead letters run as many short statements as it takes, each on
-- at most a batch of the oldest dead letters that died before the first one began (so a
-- queue that keeps dying cannot keep them going): no transaction holds a subscription's
-- dead letters, or the advisory lock of its topic, for longer than one batch.

ALTER TABLE dead_letters ADD COLUMN reason TEXT NOT NULL DEFAULT 'max_delivery_attempts';
ALTER TABLE dead_letters ALTER COLUMN reason DROP DEFAULT;

-- Changes to a subscription's dead-letter count of one reason label.
CREATE TABLE dead_letter_counts (
    subscription_key BIGINT NOT NULL,
    reason TEXT NOT NULL,
    dead BIGINT NOT NULL
);

CREATE INDEX dead_letter_counts_subscription_key_idx ON dead_letter_counts (subscription_key, reason);

INSERT INTO dead_letter_counts (subscription_key, reason, dead)
SELECT subscription_key, 'max_delivery_attempts', count(*) FROM dead_letters GROUP BY subscription_key;

-- dead_letter_reason_label names the /metrics label of a dead letter's reason: the
-- server's own reasons as they are, "nacked" for every reason a nack gave.
CREATE FUNCTION dead_letter_reason_label(p_reason TEXT)
RETURNS TEXT
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_reason IN ('max_delivery_attempts', 'lease_expired') THEN p_reason ELSE 'nacked' END;
$$;

-- bury_messages moves the given delivered messages of a subscription to its dead-letter
-- queue with p_reason, and counts them; the caller has locked the rows. Returns how many.
CREATE FUNCTION bury_messages(p_subscription_key BIGINT, p_message_ids BIGINT[], p_reason TEXT)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_buried INTEGER;
BEGIN
    WITH buried AS (
        DELETE FROM messages
        WHERE subscription_key = p_subscription_key AND id = ANY (p_message_ids) AND delivered_since(locked_at, '-infinity')
        RETURNING subscription_key, id, payload, delivery_attempts, created_at, ordering_hash
    )
    INSERT INTO dead_letters (subscription_key, id, payload, delivery_attempts, created_at, ordering_hash, reason)
    SELECT subscription_key, id, payload, delivery_attempts, created_at, ordering_hash, p_reason FROM buried;
    GET DIAGNOSTICS v_buried = ROW_COUNT;
    IF v_buried > 0 THEN
        INSERT INTO queue_counts (subscription_key, delivered, dlq) VALUES (p_subscription_key, -v_buried, v_buried);
        INSERT INTO dead_letter_counts (subscription_key, reason, dead)
        VALUES (p_subscription_key, dead_letter_reason_label(p_reason), v_buried);
    END IF;
    RETURN v_buried;
END;
$$;

-- revive_dead_letters moves the given dead letters of a subscription back to its queue,
-- ready now, with their delivery attempts reset, and counts them. Returns how many.
CREATE FUNCTION revive_dead_letters(p_subscription subscriptions, p_message_ids BIGINT[])
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_key BIGINT := p_subscription.key;
    v_revived INTEGER;
BEGIN
    -- Like publish: no message may outlive a subscription being deleted.
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_subscription.topic_id, 0));
    WITH revived AS (
        DELETE FROM dead_letters
        WHERE id = ANY (p_message_ids) AND subscription_key + 0 = v_key
        RETURNING subscription_key, id, payload, created_at, ordering_hash, reason
    ),
    queued AS (
        -- With its ordering hash, a reprocessed message takes its place in its value's order again.
        INSERT INTO messages (subscription_key, id, payload, created_at, ordering_hash)
        SELECT subscription_key, id, payload, created_at, ordering_hash FROM revived
        RETURNING 1
    ),
    by_reason AS (
        INSERT INTO dead_letter_counts (subscription_key, reason, dead)
        SELECT v_key, dead_letter_reason_label(reason), -count(*) FROM revived GROUP BY 2
    )
    SELECT count(*) INTO v_revived FROM queued;
    IF v_revived > 0 THEN
        INSERT INTO queue_counts (subscription_key, available, dlq) VALUES (v_key, v_revived, -v_revived);
    END IF;
    RETURN v_revived;
END;
$$;

-- purge_dead_letters deletes the given dead letters of a subscription, and counts them.
-- Returns how many.
CREATE FUNCTION purge_dead_letters(p_subscription subscriptions, p_message_ids BIGINT[])
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_key BIGINT := p_subscription.key;
    v_purged INTEGER;
BEGIN
    -- So that no count is written for a subscription that a concurrent delete has forgotten.
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_subscription.topic_id, 0));
    WITH purged AS (
        DELETE FROM dead_letters
        WHERE id = ANY (p_message_ids) AND subscription_key + 0 = v_key
        RETURNING reason
    ),
    by_reason AS (
        INSERT INTO dead_letter_counts (subscription_key, reason, dead)
        SELECT v_key, dead_letter_reason_label(reason), -count(*) FROM purged GROUP BY 2
    )
    SELECT count(*) INTO v_purged FROM purged;
    IF v_purged > 0 THEN
        INSERT INTO queue_counts (subscription_key, dlq) VALUES (v_key, -v_purged);
    END IF;
    RETURN v_purged;
END;
$$;

-- oldest_dead_letters locks and returns the ids of up to p_limit of a subscription's oldest
-- dead letters that died at or before p_dead_before, skipping those another call holds.
CREATE FUNCTION oldest_dead_letters(p_subscription_key BIGINT, p_dead_before TIMESTAMPTZ, p_limit INTEGER)
RETURNS BIGINT[]
LANGUAGE sql
SET enable_seqscan = off
-- A bitmap scan reads (and sorts) all of the subscription's dead letters for each batch.
SET enable_bitmapscan = off
AS $$
    SELECT ARRAY(
        SELECT d.id
        FROM dead_letters AS d
        WHERE d.subscription_key = p_subscription_key AND d.dead_at <= p_dead_before
        ORDER BY d.created_at, d.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    );
$$;

DROP FUNCTION release_deliveries(subscriptions, BIGINT[], INTEGER);

-- release_deliveries ends deliveries that failed: each message goes to the
-- dead-letter queue with p_reason once it has used up the subscription's attempts,
-- else becomes available again after p_delay_seconds, or when that is NULL after the
-- backoff, min(backoff_max, backoff_min * 2^attempts) seconds. The caller has
-- locked the rows. Returns the number of messages released.
CREATE FUNCTION release_deliveries(
    p_subscription subscriptions,
    p_message_ids BIGINT[],
    p_delay_seconds INTEGER,
    -- Defaulted for ModifyAckDeadline with 0, which releases as a nack does.
    p_reason TEXT DEFAULT 'max_delivery_attempts'
)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_key BIGINT := p_subscription.key;
    v_buried INTEGER;
    v_retried INTEGER;
BEGIN
    v_buried := bury_messages(v_key, ARRAY(
        SELECT id FROM messages
        WHERE subscription_key = v_key AND id = ANY (p_message_ids) AND delivered_since(locked_at, '-infinity')
          AND delivery_attempts >= p_subscription.max_delivery_attempts
    ), p_reason);
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
    IF v_retried > 0 THEN
        INSERT INTO queue_counts (subscription_key, available, delivered) VALUES (v_key, v_retried, -v_retried);
    END IF;
    RETURN v_retried + v_buried;
END;
$$;

DROP FUNCTION nack_messages(TEXT, BIGINT[], TEXT, INTEGER);

-- nack_messages releases the given messages whose delivery is live (and, when
-- p_consumer_id is not null, held by that consumer) as failed deliveries, ready
-- again after p_delay_seconds or, when that is NULL, after the backoff; with
-- p_dead_letter it moves them to the dead-letter queue at once, with p_reason
-- ("nacked" when NULL). Other ids change nothing. Raises FP404 for a missing subscription.
CREATE FUNCTION nack_messages(
    p_subscription_id TEXT,
    p_message_ids BIGINT[],
    p_consumer_id TEXT,
    p_delay_seconds INTEGER,
    p_dead_letter BOOLEAN,
    p_reason TEXT
)
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
    v_ids BIGINT[];
BEGIN
    -- Locked here, so that the lease expiry cannot release them in between.
    v_ids := ARRAY(
        SELECT id FROM messages
        WHERE subscription_key = v_subscription.key
          AND id = ANY (p_message_ids)
          AND lease_live(locked_at, available_at, now())
          AND (p_consumer_id IS NULL OR consumer_id = p_consumer_id)
        FOR UPDATE
    );
    IF p_dead_letter THEN
        RETURN bury_messages(v_subscription.key, v_ids, coalesce(p_reason, 'nacked'));
    END IF;
    RETURN release_deliveries(v_subscription, v_ids, p_delay_seconds, coalesce(p_reason, 'max_delivery_attempts'));
END;
$$;

-- expire_leases releases, as failed deliveries (backoff, or the dead-letter
-- queue as "lease_expired"), up to p_limit deliveries whose lease has ended, across
-- every subscription; safe to run from several servers at once. Returns how many.
-- (A sweep that runs every second gives up after a second behind a table lock,
-- rather than hold a connection, or a server's shutdown, for the statement timeout.)
CREATE OR REPLACE FUNCTION expire_leases(p_limit INTEGER)
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
            v_released := v_released + release_deliveries(v_subscription, v_ids, NULL, 'lease_expired');
        END IF;
    END LOOP;
    RETURN v_released;
END;
$$;

-- cleanup_stuck_messages releases, as failed deliveries (the dead-letter queue as
-- "lease_expired"), the messages locked longer than p_lock_timeout_seconds, whatever
-- their lease; safe to run from several servers at once. Returns the number released.
CREATE OR REPLACE FUNCTION cleanup_stuck_messages(p_lock_timeout_seconds INTEGER)
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
        ), NULL, 'lease_expired');
    END LOOP;
    RETURN v_released;
END;
$$;

DROP FUNCTION list_dlq_messages(TEXT, INTEGER, INTEGER);

-- list_dlq_messages returns a page of a subscription's dead letters, oldest first,
-- with when and why each died.
CREATE FUNCTION list_dlq_messages(p_subscription_id TEXT, p_offset INTEGER, p_limit INTEGER)
RETURNS TABLE (id BIGINT, payload JSON, delivery_attempts INTEGER, created_at TIMESTAMPTZ, dead_at TIMESTAMPTZ, reason TEXT)
LANGUAGE plpgsql
STABLE
SET enable_seqscan = off
AS $$
DECLARE
    v_key BIGINT := (get_subscription(p_subscription_id)).key;
BEGIN
    RETURN QUERY
    SELECT d.id, d.payload, d.delivery_attempts, d.created_at, d.dead_at, d.reason
    FROM dead_letters AS d
    WHERE d.subscription_key = v_key
    ORDER BY d.created_at, d.id
    OFFSET p_offset
    LIMIT p_limit;
END;
$$;

-- reprocess_dlq_messages moves the given dead letters back to the queue, ready
-- now, with their delivery attempts reset; other ids change nothing.
CREATE OR REPLACE FUNCTION reprocess_dlq_messages(p_subscription_id TEXT, p_message_ids BIGINT[])
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN revive_dead_letters(get_subscription(p_subscription_id), p_message_ids);
END;
$$;

-- reprocess_all_dlq_messages moves up to p_limit of a subscription's oldest dead letters
-- that died at or before p_dead_before (now, when NULL) back to the queue, as
-- reprocess_dlq_messages does; returns how many, and the time it used, for the next batch.
CREATE FUNCTION reprocess_all_dlq_messages(p_subscription_id TEXT, p_dead_before TIMESTAMPTZ, p_limit INTEGER)
RETURNS TABLE (processed INTEGER, dead_before TIMESTAMPTZ)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
    v_dead_before TIMESTAMPTZ := coalesce(p_dead_before, now());
BEGIN
    RETURN QUERY SELECT
        revive_dead_letters(v_subscription, oldest_dead_letters(v_subscription.key, v_dead_before, p_limit)),
        v_dead_before;
END;
$$;

-- purge_dlq_messages deletes the given dead letters; other ids change nothing.
-- Raises FP404 for a missing subscription. Returns how many.
CREATE FUNCTION purge_dlq_messages(p_subscription_id TEXT, p_message_ids BIGINT[])
RETURNS INTEGER
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
BEGIN
    RETURN purge_dead_letters(get_subscription(p_subscription_id), p_message_ids);
END;
$$;

-- purge_all_dlq_messages deletes up to p_limit of a subscription's oldest dead letters
-- that died at or before p_dead_before (now, when NULL); returns how many, and the time
-- it used, for the next batch.
CREATE FUNCTION purge_all_dlq_messages(p_subscription_id TEXT, p_dead_before TIMESTAMPTZ, p_limit INTEGER)
RETURNS TABLE (processed INTEGER, dead_before TIMESTAMPTZ)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    v_subscription subscriptions := get_subscription(p_subscription_id);
    v_dead_before TIMESTAMPTZ := coalesce(p_dead_before, now());
BEGIN
    RETURN QUERY SELECT
        purge_dead_letters(v_subscription, oldest_dead_letters(v_subscription.key, v_dead_before, p_limit)),
        v_dead_before;
END;
$$;

-- compact_counts folds each subscription's count deltas into one row (dead letters: one
-- per reason label), and its acknowledgements into one row per minute. Safe to run from
-- several servers at once.
CREATE OR REPLACE FUNCTION compact_counts()
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
        DELETE FROM dead_letter_counts RETURNING subscription_key, reason, dead
    )
    INSERT INTO dead_letter_counts (subscription_key, reason, dead)
    SELECT subscription_key, reason, sum(dead)
    FROM folded
    GROUP BY subscription_key, reason
    HAVING sum(dead) <> 0;

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
CREATE OR REPLACE FUNCTION forget_subscriptions(p_keys BIGINT[])
RETURNS VOID
LANGUAGE sql
AS $$
    DELETE FROM messages WHERE subscription_key = ANY (p_keys) AND locked_at IS NULL;
    DELETE FROM messages WHERE subscription_key = ANY (p_keys) AND locked_at IS NOT NULL;
    DELETE FROM dead_letters WHERE subscription_key = ANY (p_keys);
    DELETE FROM queue_counts WHERE subscription_key = ANY (p_keys);
    DELETE FROM dead_letter_counts WHERE subscription_key = ANY (p_keys);
    DELETE FROM acked_counts WHERE subscription_key = ANY (p_keys);
$$;

DROP FUNCTION queue_stats();

-- queue_stats returns, for every subscription, its available, delivered and
-- dead-lettered counts and its dead letters by reason label (from the count deltas),
-- the age of the message at the head of its queue (one lookup in the ready index),
-- and its delayed messages: never delivered and not yet due (a range of the ready
-- index past now, so its cost follows the messages waiting for a time, not the queue).
CREATE FUNCTION queue_stats()
RETURNS TABLE (
    subscription_id TEXT,
    available BIGINT,
    delivered BIGINT,
    dlq BIGINT,
    oldest_available_age_seconds DOUBLE PRECISION,
    delayed BIGINT,
    dlq_by_reason JSONB
)
LANGUAGE sql
STABLE
SET enable_seqscan = off
AS $$
    SELECT
        s.id,
        coalesce(t.available, 0),
        coalesce(t.delivered, 0),
        coalesce(t.dlq, 0),
        coalesce(extract(epoch FROM now() - head.created_at), 0)::DOUBLE PRECISION,
        waiting.delayed,
        coalesce(reasons.dlq_by_reason, '{}')
    FROM subscriptions AS s
    LEFT JOIN queue_totals AS t ON t.subscription_key = s.key
    LEFT JOIN LATERAL (
        SELECT m.created_at
        FROM messages AS m
        WHERE m.subscription_key = s.key AND m.locked_at IS NULL AND m.available_at <= now()
        ORDER BY m.available_at
        LIMIT 1
    ) AS head ON true
    CROSS JOIN LATERAL (
        SELECT count(*) AS delayed
        FROM messages AS m
        WHERE m.subscription_key = s.key AND m.locked_at IS NULL AND m.available_at > now() AND m.delivery_attempts = 0
    ) AS waiting
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(c.reason, c.dead) AS dlq_by_reason
        FROM (
            SELECT d.reason, sum(d.dead)::BIGINT AS dead
            FROM dead_letter_counts AS d
            WHERE d.subscription_key = s.key
            GROUP BY d.reason
        ) AS c
    ) AS reasons ON true
    ORDER BY s.id;
$$;
