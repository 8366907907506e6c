-- Subscription filters read every payload, even one holding a string that PostgreSQL's
-- text cannot (U+0000, or a lone UTF-16 surrogate).
--
-- Payloads are stored as json text, which keeps such strings as sent ("\u0000"), but the
-- json operators de-escape every string of a value they read and raise for such a string,
-- wherever it is in the value: filter_matches could not read the payload at all, and the
-- publish failed. For a batch that holds one (the server finds the escapes in the text it
-- sends), the server now passes the text forms of each payload's top-level values, which
-- are what a filter compares, and such a string has none: it equals no filter value.

-- filter_matches_text_forms tells whether a payload passes a subscription filter, given
-- the text forms of its top-level values (key → the texts the value can equal: one, or
-- none for a string PostgreSQL cannot read; null values and unreadable keys left out).
CREATE FUNCTION filter_matches_text_forms(p_filter JSONB, p_text_forms JSONB)
RETURNS BOOLEAN
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT p_filter IS NULL OR NOT EXISTS (
        SELECT 1
        FROM jsonb_each(p_filter) AS f (key, allowed)
        WHERE p_text_forms ? f.key
          AND NOT (p_text_forms -> f.key ?| ARRAY(SELECT jsonb_array_elements_text(f.allowed)))
    );
$$;

DROP FUNCTION publish_messages(TEXT, JSON);

-- publish_messages routes each payload of a JSON array to every subscription of
-- the topic whose filter it matches; raises FP404 for a missing topic. Returns
-- the number of rows routed. p_text_forms, when given, holds the text forms of
-- each payload's top-level values (see filter_matches_text_forms), in order,
-- and the filters read them instead of the payloads.
CREATE FUNCTION publish_messages(p_topic_id TEXT, p_messages JSON, p_text_forms JSONB DEFAULT NULL)
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
          AND (s.filter IS NULL OR CASE
              WHEN p_text_forms IS NULL THEN filter_matches(s.filter, m.payload)
              ELSE filter_matches_text_forms(s.filter, p_text_forms -> (m.position::INTEGER - 1))
          END)
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

ALTER FUNCTION publish_messages(TEXT, JSON, JSONB) SET enable_seqscan = off;
