-- API clients for OAuth2 client-credentials authentication. Updating or
-- deleting a client notifies channel fastpubsub_clients with its id, so that
-- every server drops the cached state behind its tokens at once.

CREATE TABLE clients (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    is_active BOOLEAN NOT NULL,
    secret_hash TEXT NOT NULL,
    token_version INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- create_client inserts a client; the id and the secret's hash come from the caller.
CREATE FUNCTION create_client(p_id UUID, p_name TEXT, p_scopes TEXT, p_is_active BOOLEAN, p_secret_hash TEXT)
RETURNS clients
LANGUAGE sql
AS $$
    INSERT INTO clients (id, name, scopes, is_active, secret_hash)
    VALUES (p_id, p_name, p_scopes, p_is_active, p_secret_hash)
    RETURNING *;
$$;

-- get_client returns one client, or raises FP404.
CREATE FUNCTION get_client(p_id UUID)
RETURNS clients
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_client clients;
BEGIN
    SELECT * INTO v_client FROM clients WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Client not found' USING ERRCODE = 'FP404';
    END IF;
    RETURN v_client;
END;
$$;

-- list_clients returns a page of clients ordered by id (ids are UUIDv7, so by age).
CREATE FUNCTION list_clients(p_offset INTEGER, p_limit INTEGER)
RETURNS SETOF clients
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM clients ORDER BY id OFFSET p_offset LIMIT p_limit;
$$;

-- update_client replaces a client's settings and bumps its token_version,
-- which revokes its tokens; raises FP404.
CREATE FUNCTION update_client(p_id UUID, p_name TEXT, p_scopes TEXT, p_is_active BOOLEAN)
RETURNS clients
LANGUAGE plpgsql
AS $$
DECLARE
    v_client clients;
BEGIN
    UPDATE clients
    SET name = p_name, scopes = p_scopes, is_active = p_is_active,
        token_version = token_version + 1, updated_at = now()
    WHERE id = p_id
    RETURNING * INTO v_client;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Client not found' USING ERRCODE = 'FP404';
    END IF;
    PERFORM pg_notify('fastpubsub_clients', p_id::TEXT);
    RETURN v_client;
END;
$$;

-- delete_client deletes a client, revoking its tokens; raises FP404.
CREATE FUNCTION delete_client(p_id UUID)
RETURNS VOID
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM clients WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Client not found' USING ERRCODE = 'FP404';
    END IF;
    PERFORM pg_notify('fastpubsub_clients', p_id::TEXT);
END;
$$;

-- client_token_states returns whether each given client may use its tokens,
-- and which token_version they must carry; missing clients are left out.
CREATE FUNCTION client_token_states(p_ids UUID[])
RETURNS TABLE (id UUID, is_active BOOLEAN, token_version INTEGER)
LANGUAGE sql
STABLE
AS $$
    SELECT c.id, c.is_active, c.token_version FROM clients AS c WHERE c.id = ANY (p_ids);
$$;
