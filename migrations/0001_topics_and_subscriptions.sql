-- Topics and subscriptions, and the SQL functions that manage them.
-- Functions that refuse a request raise SQLSTATE FP404 (not found) or FP409
-- (already exists) with the message the client sees.

CREATE TABLE topics (
    id TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    topic_id TEXT NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    filter JSONB,
    max_delivery_attempts INTEGER NOT NULL CHECK (max_delivery_attempts >= 1),
    backoff_min_seconds INTEGER NOT NULL CHECK (backoff_min_seconds >= 1),
    backoff_max_seconds INTEGER NOT NULL CHECK (backoff_max_seconds >= backoff_min_seconds),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX subscriptions_topic_id_idx ON subscriptions (topic_id);

-- create_topic inserts a topic, or raises FP409 when the id is taken.
CREATE FUNCTION create_topic(p_id TEXT)
RETURNS topics
LANGUAGE plpgsql
AS $$
DECLARE
    v_topic topics;
BEGIN
    INSERT INTO topics (id) VALUES (p_id)
    ON CONFLICT (id) DO NOTHING
    RETURNING * INTO v_topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'This topic already exists' USING ERRCODE = 'FP409';
    END IF;
    RETURN v_topic;
END;
$$;

-- get_topic returns one topic, or raises FP404.
CREATE FUNCTION get_topic(p_id TEXT)
RETURNS topics
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_topic topics;
BEGIN
    SELECT * INTO v_topic FROM topics WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Topic not found' USING ERRCODE = 'FP404';
    END IF;
    RETURN v_topic;
END;
$$;

-- list_topics returns a page of topics ordered by id.
CREATE FUNCTION list_topics(p_offset INTEGER, p_limit INTEGER)
RETURNS SETOF topics
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM topics ORDER BY id OFFSET p_offset LIMIT p_limit;
$$;

-- delete_topic deletes a topic with its subscriptions, or raises FP404.
CREATE FUNCTION delete_topic(p_id TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM topics WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Topic not found' USING ERRCODE = 'FP404';
    END IF;
END;
$$;

-- create_subscription subscribes to a topic; it raises FP409 when the id is
-- taken and FP404 when the topic does not exist.
CREATE FUNCTION create_subscription(
    p_id TEXT,
    p_topic_id TEXT,
    p_filter JSONB,
    p_max_delivery_attempts INTEGER,
    p_backoff_min_seconds INTEGER,
    p_backoff_max_seconds INTEGER
)
RETURNS subscriptions
LANGUAGE plpgsql
AS $$
DECLARE
    v_subscription subscriptions;
BEGIN
    INSERT INTO subscriptions (id, topic_id, filter, max_delivery_attempts, backoff_min_seconds, backoff_max_seconds)
    VALUES (p_id, p_topic_id, p_filter, p_max_delivery_attempts, p_backoff_min_seconds, p_backoff_max_seconds)
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

-- get_subscription returns one subscription, or raises FP404.
CREATE FUNCTION get_subscription(p_id TEXT)
RETURNS subscriptions
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_subscription subscriptions;
BEGIN
    SELECT * INTO v_subscription FROM subscriptions WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Subscription not found' USING ERRCODE = 'FP404';
    END IF;
    RETURN v_subscription;
END;
$$;

-- list_subscriptions returns a page of subscriptions ordered by id.
CREATE FUNCTION list_subscriptions(p_offset INTEGER, p_limit INTEGER)
RETURNS SETOF subscriptions
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM subscriptions ORDER BY id OFFSET p_offset LIMIT p_limit;
$$;

-- delete_subscription deletes a subscription, or raises FP404.
CREATE FUNCTION delete_subscription(p_id TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM subscriptions WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Subscription not found' USING ERRCODE = 'FP404';
    END IF;
END;
$$;
