-- clerk schema, version 7: dashboard users and their web sessions.
-- web_users:    who may sign in to the dashboard of `clerk serve --http`, with
--               a role (auditor | operator | admin) and an argon2id hash (PHC
--               string); never a plain password.
-- web_sessions: one row per signed-in browser; the cookie carries a random
--               token, the table only its SHA-256, so a copy of the database
--               does not hand out sessions. csrf is the token every form of
--               that session must send back.

CREATE TABLE web_users (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
);

CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX web_sessions_user_idx ON web_sessions (user_name);
