-- switchboard schema v5: API keys (issue 5). Portable SQL, as 0001.
-- API keys (issue 5): only a SHA-256 of each key is kept; the key is shown once at creation.
-- `prefix` (the key's public part) finds the row; `scope` is read | control | admin.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'control', 'admin')),
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
