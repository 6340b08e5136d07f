-- switchboard schema v2: call recordings (DESIGN §3). Portable SQL, as 0001.
-- One row per recorded WAV file; path is relative to the data directory. No foreign keys to
-- calls/sessions on purpose: a recording row must never be lost because its call row was
-- (a file without a row would escape crash repair and retention).
CREATE TABLE recordings (
    id              TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL,
    call_id         TEXT NOT NULL,
    path            TEXT NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('recording', 'complete', 'repaired', 'failed', 'deleted')),
    channels        BIGINT NOT NULL,
    sample_rate     BIGINT NOT NULL,
    duration_ms     BIGINT,
    size_bytes      BIGINT,
    sha256          TEXT,
    started_ms      BIGINT NOT NULL,
    ended_ms        BIGINT,
    dropped_frames  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX recordings_session ON recordings (session_id);
CREATE INDEX recordings_call ON recordings (call_id);
CREATE INDEX recordings_started ON recordings (started_ms);
