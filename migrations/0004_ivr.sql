-- switchboard schema v4: IVR (DESIGN §3 step 3, §4). Portable SQL, as 0001.
-- What a caller entered in the IVR becomes session context: one row per attribute name, the
-- last value written wins. call_id says which call set it (NULL when no call did).
CREATE TABLE session_attributes (
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    call_id     TEXT,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (session_id, name)
);

-- What a recording is: a call recording, a voicemail left in a mailbox, or a message
-- recorded for later playback (a greeting, an announcement). Existing rows are calls.
ALTER TABLE recordings ADD COLUMN kind TEXT NOT NULL DEFAULT 'call'
    CHECK (kind IN ('call', 'voicemail', 'message'));
ALTER TABLE recordings ADD COLUMN mailbox TEXT;
CREATE INDEX recordings_mailbox ON recordings (mailbox, started_ms);
