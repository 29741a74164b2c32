"""The site store's schema and its migrations, versioned by ``PRAGMA user_version``.

A migration is appended, never edited: ``MIGRATIONS[i]`` takes a store from version i to i+1.
"""

from __future__ import annotations

import apsw

from balsamd.store.sql import value

RUNNABLE_SQL = "('PREPROCESSED', 'RESTART_READY')"
# the states of a failed run or job: what a live view lists as recent failures
FAILED_SQL = "('FAILED', 'RUN_ERROR', 'RUN_TIMEOUT')"

MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

    -- one change counter per store: every write transaction stamps the rows it touched
    -- with the next value, which is what sync pushes from (the outbox marker)
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters VALUES ('seq', 0), ('apps', 0);

    CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        spec BLOB NOT NULL,
        seq INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );

    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        workdir TEXT NOT NULL,
        state TEXT NOT NULL,
        num_nodes INTEGER NOT NULL,
        ranks_per_node INTEGER NOT NULL,
        threads_per_rank INTEGER NOT NULL,
        threads_per_core INTEGER NOT NULL,
        gpus_per_rank REAL NOT NULL,
        node_packing_count INTEGER NOT NULL,
        wall_time_min REAL NOT NULL,
        parameters TEXT NOT NULL,
        tags TEXT NOT NULL,
        data TEXT NOT NULL,
        parent_ids TEXT NOT NULL,
        launch_params TEXT NOT NULL,
        return_code INTEGER,
        session_id TEXT,
        batch_job_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        state_reason TEXT NOT NULL DEFAULT '',
        result BLOB,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL
    );
    CREATE INDEX jobs_state ON jobs (state);
    CREATE INDEX jobs_app ON jobs (app);
    CREATE INDEX jobs_seq ON jobs (seq);
    CREATE INDEX jobs_session ON jobs (session_id) WHERE session_id IS NOT NULL;
    -- claiming reads only this: unbound runnable jobs, smallest first, oldest first
    CREATE INDEX jobs_runnable ON jobs (num_nodes, id)
        WHERE session_id IS NULL AND state IN {RUNNABLE_SQL};

    CREATE TABLE job_tags (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        job_id TEXT NOT NULL,
        PRIMARY KEY (key, value, job_id)
    ) WITHOUT ROWID;
    CREATE INDEX job_tags_job ON job_tags (job_id);

    CREATE TABLE job_parents (
        parent_id TEXT NOT NULL,
        child_id TEXT NOT NULL,
        PRIMARY KEY (parent_id, child_id)
    ) WITHOUT ROWID;
    CREATE INDEX job_parents_child ON job_parents (child_id);

    -- AUTOINCREMENT: event ids never go backwards, even after deletes (sync cursors rely on it)
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        ts REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_job ON events (job_id);

    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        batch_job_id TEXT,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        ended_at REAL
    );
    CREATE INDEX sessions_open ON sessions (heartbeat_at) WHERE state = 'open';

    CREATE TABLE batch_jobs (
        id TEXT PRIMARY KEY,
        num_nodes INTEGER NOT NULL,
        wall_time_min INTEGER NOT NULL,
        job_mode TEXT NOT NULL,
        project TEXT NOT NULL,
        queue TEXT NOT NULL,
        filter_tags TEXT NOT NULL,
        state TEXT NOT NULL,
        scheduler_id TEXT,
        status_info TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        start_time REAL,
        end_time REAL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX batch_jobs_state ON batch_jobs (state);
    """,
    # 2: who asked for a batch job (a user, or the elastic queue that sizes itself by it)
    """
    ALTER TABLE batch_jobs ADD COLUMN origin TEXT NOT NULL DEFAULT 'user';
    """,
    # 3: syncing with a central database: this store's identity, its cursors, and the
    # intents it applied (each exactly once)
    """
    INSERT OR IGNORE INTO meta VALUES ('store_id', lower(hex(randomblob(16))));
    CREATE TABLE applied_intents (
        id TEXT PRIMARY KEY,
        outcome TEXT NOT NULL,
        applied_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX batch_jobs_seq ON batch_jobs (seq);
    CREATE INDEX apps_seq ON apps (seq);
    CREATE TABLE deleted_jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX deleted_jobs_seq ON deleted_jobs (seq);
    """,
    # 4: the id of each session's last claim, so that a resent claim is recognised
    """
    ALTER TABLE sessions ADD COLUMN last_claim TEXT NOT NULL DEFAULT '';
    """,
    # 5: who asked for a job through the central database, kept so a restored central gets it back
    """
    ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
    # 6: events are stored a row per move, not per step: a short run's start, end and the
    # steps its default hooks settle through (five events) are one row.  The steps of each
    # kind of move are kept once, in event_paths / event_steps; the events view joins them
    # back.  A move's id is the id of its first event, the next ones follow it, so event ids
    # stay what they were (the sync cursors and the central database hold them).
    """
    CREATE TABLE event_paths (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE  -- the states walked, and which step carries the reason
    );
    CREATE TABLE event_steps (
        path INTEGER NOT NULL REFERENCES event_paths (id),
        step INTEGER NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        carries_reason INTEGER NOT NULL,
        PRIMARY KEY (path, step)
    ) WITHOUT ROWID;
    CREATE TABLE moves (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        path INTEGER NOT NULL REFERENCES event_paths (id),
        t0 REAL NOT NULL,  -- when the first step happened
        ts REAL NOT NULL,  -- when the others did
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX moves_job ON moves (job_id);

    INSERT INTO event_paths (key)
        SELECT DISTINCT json_array(from_state, to_state) || '/0' FROM events;
    INSERT INTO event_steps
        SELECT DISTINCT p.id, 0, e.from_state, e.to_state, 1 FROM events e
        JOIN event_paths p ON p.key = json_array(e.from_state, e.to_state) || '/0';
    INSERT INTO moves (id, job_id, path, t0, ts, reason)
        SELECT e.id, e.job_id, p.id, e.ts, e.ts, e.reason FROM events e
        JOIN event_paths p ON p.key = json_array(e.from_state, e.to_state) || '/0';
    -- event ids never go backwards, even after deletes (sync cursors rely on it)
    INSERT INTO counters VALUES ('events', MAX(
        COALESCE((SELECT MAX(id) FROM events), 0),
        COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)));
    DROP TABLE events;
    DELETE FROM sqlite_sequence WHERE name = 'events';

    -- move and step: to read events in order from an id (see SiteStore.events)
    CREATE VIEW events (id, job_id, from_state, to_state, ts, reason, move, step) AS
        SELECT m.id + s.step, m.job_id, s.from_state, s.to_state,
               CASE s.step WHEN 0 THEN m.t0 ELSE m.ts END,
               CASE s.carries_reason WHEN 1 THEN m.reason ELSE '' END,
               m.id, s.step
        FROM moves m JOIN event_steps s ON s.path = m.path;
    """,
    # 7: an applied intent's outcome is a JSON document (models.IntentOutcome), not text that
    # readers parse by its prefix
    """
    UPDATE applied_intents SET outcome = CASE
        WHEN outcome LIKE 'rejected: %' THEN json_object('status', 'rejected', 'reason', substr(outcome, 11))
        WHEN outcome LIKE 'rejected%' THEN json_object('status', 'rejected', 'reason', outcome)
        ELSE json_object('status', 'applied') END;
    """,
    # 8: a batch job's partitions and optional scheduler parameters, and the central user who
    # asked for it (only they may remove it through the central database)
    """
    ALTER TABLE batch_jobs ADD COLUMN partitions TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE batch_jobs ADD COLUMN optional_params TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE batch_jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
    # 9: apps central users declared and the site accepted ([apps] accept_from), by name; the
    # daemon writes each to apps/ (``written``) and publishes it like any app file
    """
    CREATE TABLE declared_apps (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        code TEXT NOT NULL,
        intent_id TEXT NOT NULL,
        installed_at REAL NOT NULL,
        written INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 10: the files a job brings in and sends out: its app's transfer slots, each "LOCATION:/path"
    """
    ALTER TABLE jobs ADD COLUMN transfers TEXT NOT NULL DEFAULT '{}';
    """,
    # 11: the transfer service's work: an item per job's slot, and the tasks that batch them
    # (recorded before a backend runs one, so a restart resumes it instead of starting another)
    """
    CREATE TABLE transfer_items (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        slot TEXT NOT NULL,
        direction TEXT NOT NULL,
        location TEXT NOT NULL,
        path TEXT NOT NULL,
        local_path TEXT NOT NULL,
        recursive INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        task_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL,
        seq INTEGER NOT NULL,
        UNIQUE (job_id, slot)
    );
    CREATE INDEX transfer_items_pending ON transfer_items (direction, id) WHERE state = 'pending';
    CREATE INDEX transfer_items_task ON transfer_items (task_id) WHERE task_id IS NOT NULL;
    CREATE INDEX transfer_items_seq ON transfer_items (seq);
    CREATE TABLE transfer_tasks (
        id TEXT PRIMARY KEY,
        direction TEXT NOT NULL,
        location TEXT NOT NULL,
        state TEXT NOT NULL,
        external_id TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        ended_at REAL
    );
    CREATE INDEX transfer_tasks_active ON transfer_tasks (created_at) WHERE state = 'active';
    """,
    # 12: a live view of the campaign (``balsamd top``) and the reports read the recent past, or a
    # window of one kind of move (finishes, runs, failures), without a scan: moves by kind and
    # time, and the failed jobs by when they failed (only they are in this index)
    f"""
    CREATE INDEX moves_path_ts ON moves (path, ts);
    CREATE INDEX jobs_failed ON jobs (updated_at) WHERE state IN {FAILED_SQL};
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class StoreTooNew(RuntimeError):
    pass


def migrate(conn: apsw.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; each step in its own immediate transaction."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = value(conn, "PRAGMA user_version")
            if version > SCHEMA_VERSION:
                raise StoreTooNew(
                    f"store schema version {version} is newer than this balsamd understands "
                    f"({SCHEMA_VERSION}); upgrade balsamd"
                )
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return version
            conn.execute(MIGRATIONS[version])
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
