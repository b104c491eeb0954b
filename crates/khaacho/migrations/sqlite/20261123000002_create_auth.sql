-- Identity and security (issue #4): users, refresh tokens, API keys, failed logins, the
-- signing key of the embedded default, and the append-only audit log.

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    username      text NOT NULL CONSTRAINT users_username_key UNIQUE,
    email         text CONSTRAINT users_email_key UNIQUE,
    password_hash text NOT NULL,                 -- argon2id PHC string
    role          text NOT NULL CONSTRAINT users_role_check CHECK (role IN ('admin', 'operator', 'vendor', 'retailer')),
    retailer_id   BLOB CONSTRAINT users_retailer_fk REFERENCES retailers (id), -- tenant of a retailer user
    vendor_id     BLOB CONSTRAINT users_vendor_fk REFERENCES vendors (id),     -- tenant of a vendor user
    active        INTEGER NOT NULL DEFAULT 1,
    created_at_ms bigint NOT NULL,
    -- A retailer or vendor user has exactly its own tenant; platform staff have none.
    CONSTRAINT users_tenant_check CHECK (
        (role = 'retailer' AND retailer_id IS NOT NULL AND vendor_id IS NULL)
        OR (role = 'vendor' AND vendor_id IS NOT NULL AND retailer_id IS NULL)
        OR (role IN ('admin', 'operator') AND retailer_id IS NULL AND vendor_id IS NULL))
);

CREATE TABLE refresh_tokens (
    id            BLOB PRIMARY KEY,
    user_id       BLOB NOT NULL CONSTRAINT refresh_tokens_user_fk REFERENCES users (id),
    family_id     BLOB NOT NULL,                 -- one login session; revoked as a whole
    token_hash    BLOB NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE, -- SHA-256 of the token
    issued_at_ms  bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    spent_at_ms   bigint,                        -- set when rotated
    revoked       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at_ms);

CREATE TABLE api_keys (
    id              BLOB PRIMARY KEY,
    prefix          text NOT NULL CONSTRAINT api_keys_prefix_key UNIQUE, -- visible part, the lookup key
    key_hash        BLOB NOT NULL,              -- SHA-256 of the whole key; the key is never stored
    role            text NOT NULL CONSTRAINT api_keys_role_check CHECK (role IN ('admin', 'operator', 'vendor', 'retailer')),
    retailer_id     BLOB CONSTRAINT api_keys_retailer_fk REFERENCES retailers (id),
    vendor_id       BLOB CONSTRAINT api_keys_vendor_fk REFERENCES vendors (id),
    name            text NOT NULL,
    created_by      text NOT NULL,               -- audit actor that created it
    created_at_ms   bigint NOT NULL,
    last_used_at_ms bigint,                      -- updated at most once a minute per node
    revoked_at_ms   bigint,
    CONSTRAINT api_keys_tenant_check CHECK (
        (role = 'retailer' AND retailer_id IS NOT NULL AND vendor_id IS NULL)
        OR (role = 'vendor' AND vendor_id IS NOT NULL AND retailer_id IS NULL)
        OR (role IN ('admin', 'operator') AND retailer_id IS NULL AND vendor_id IS NULL))
);

CREATE TABLE login_failures (
    user_id BLOB NOT NULL CONSTRAINT login_failures_user_fk REFERENCES users (id),
    at_ms   bigint NOT NULL
);
CREATE INDEX login_failures_user_idx ON login_failures (user_id, at_ms);

-- The Ed25519 signing key of the embedded default (production sets auth.signing_key_pem).
CREATE TABLE signing_keys (
    name          text PRIMARY KEY,              -- 'active'
    private_pem   text NOT NULL,                 -- PKCS#8 PEM
    created_at_ms bigint NOT NULL
);

-- Append-only: the application only INSERTs (and the retention job deletes old rows).
CREATE TABLE audit_log (
    id         BLOB PRIMARY KEY,
    at_ms      bigint NOT NULL,
    actor      text NOT NULL,                    -- user:<id>, apikey:<id>, anonymous, cli
    role       text,
    action     text NOT NULL,                    -- e.g. auth.login, order.approve, authz.denied
    entity     text,                             -- e.g. order, user, api_key
    entity_id  text,
    summary    TEXT NOT NULL DEFAULT '{}',      -- what changed; never secrets
    request_id text
);
CREATE INDEX audit_log_at_idx ON audit_log (at_ms, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at_ms);
CREATE INDEX audit_log_action_idx ON audit_log (action, at_ms);
