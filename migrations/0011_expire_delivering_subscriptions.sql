-- The lease expiry looks only at subscriptions that have deliveries out.
--
-- expire_leases looked at every subscription once a second: 10,000 index probes a second
-- with 10,000 subscriptions, most of them with nothing delivered (bench/growth.ts). It now
-- walks the distinct subscriptions of the leases index (a skip scan: one index probe per
-- subscription that has deliveries out), so its cost follows the deliveries, not the
-- number of subscriptions.

-- expire_leases releases, as failed deliveries (backoff, or the dead-letter
-- queue), up to p_limit deliveries whose lease has ended, across every
-- subscription; safe to run from several servers at once. Returns how many.
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
