-- clerk schema, version 13: deployed versions of the bots (issue 17 §1).
-- deployments:      one row per `clerk deploy`: the version (1, 2, 3, ... in
--                   the order of deploys), when, by whom, from which host and
--                   folder, the SHA-256 of the whole set, and the version it
--                   re-deployed when it was a rollback.
-- deployment_bots:  the bots of a version: name, the bot file's and the
--                   playbook's path (relative to the workspace) and SHA-256.
--                   A bot missing from a version is not deployed (removed).
-- deploy_contents:  the text of every deployed file by its SHA-256
--                   (content-addressed: a file unchanged across versions is
--                   stored once).
-- runs.deploy_version: the deployed version a run executed (NULL: the bots
--                   folder of a single machine, or a manual `clerk run`).
CREATE TABLE deployments (
    version      BIGINT PRIMARY KEY,
    deployed_at  TEXT NOT NULL,
    deployed_by  TEXT NOT NULL,
    host         TEXT NOT NULL,
    source       TEXT NOT NULL,
    set_sha256   TEXT NOT NULL,
    rollback_of  BIGINT
);

CREATE TABLE deployment_bots (
    version         BIGINT NOT NULL,
    bot             TEXT NOT NULL,
    bot_path        TEXT NOT NULL,
    bot_sha256      TEXT NOT NULL,
    playbook_path   TEXT NOT NULL,
    playbook_sha256 TEXT NOT NULL,
    PRIMARY KEY (version, bot)
);
CREATE INDEX deployment_bots_bot_idx ON deployment_bots (bot, version);

CREATE TABLE deploy_contents (
    sha256  TEXT PRIMARY KEY,
    content TEXT NOT NULL
);

ALTER TABLE runs ADD COLUMN deploy_version BIGINT;
