"""The central PostgreSQL schema, its migrations, and its access rules.

Everything lives in the ``balsamd`` schema.  Rows carry the site they belong to; sites connect
as roles that are members of ``balsamd_site`` and see only their own rows; users connect as
members of ``balsamd_user`` and see only the jobs they own (row-level security).  Each kind of
role may write only the columns it owns (column privileges): a site never writes a job's
owner, nor which site it is at.  The administrator who runs `balsamd central init` owns the
tables and sees everything.  docs/security.md lists each rule and its test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from balsamd.models import BATCH_COLUMNS, JOB_COLUMNS
from balsamd.transfers.records import ITEM_COLUMNS

SCHEMA = "balsamd"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE balsamd.meta (key text PRIMARY KEY, value text NOT NULL);
    INSERT INTO balsamd.meta VALUES ('central_id', md5(random()::text || clock_timestamp()::text));

    CREATE TABLE balsamd.sites (
        name text PRIMARY KEY,
        role text UNIQUE,
        store_id text,
        pushed_seq bigint NOT NULL DEFAULT 0,
        pushed_event bigint NOT NULL DEFAULT 0,
        nodes jsonb NOT NULL DEFAULT '{}',
        last_sync double precision,
        last_error text NOT NULL DEFAULT ''
    );

    CREATE TABLE balsamd.apps (
        site text NOT NULL REFERENCES balsamd.sites (name),
        name text NOT NULL,
        spec jsonb NOT NULL,
        PRIMARY KEY (site, name)
    );

    CREATE TABLE balsamd.jobs (
        id text PRIMARY KEY,
        site text NOT NULL REFERENCES balsamd.sites (name),
        owner text NOT NULL DEFAULT current_user,
        app text NOT NULL,
        workdir text NOT NULL,
        parameters jsonb NOT NULL DEFAULT '{}',
        tags jsonb NOT NULL DEFAULT '{}',
        data jsonb NOT NULL DEFAULT '{}',
        parent_ids jsonb NOT NULL DEFAULT '[]',
        num_nodes integer NOT NULL DEFAULT 1,
        ranks_per_node integer NOT NULL DEFAULT 1,
        threads_per_rank integer NOT NULL DEFAULT 1,
        threads_per_core integer NOT NULL DEFAULT 1,
        gpus_per_rank double precision NOT NULL DEFAULT 0,
        node_packing_count integer NOT NULL DEFAULT 1,
        wall_time_min double precision NOT NULL DEFAULT 0,
        launch_params jsonb NOT NULL DEFAULT '{}',
        state text NOT NULL,
        return_code integer,
        attempts integer NOT NULL DEFAULT 0,
        state_reason text NOT NULL DEFAULT '',
        result bytea,
        session_id text,
        batch_job_id text,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        version bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_site_state ON balsamd.jobs (site, state);
    CREATE INDEX jobs_owner ON balsamd.jobs (owner);

    -- events are keyed by the store that wrote them: a replaced store starts its ids anew
    CREATE TABLE balsamd.events (
        site text NOT NULL,
        store_id text NOT NULL,
        id bigint NOT NULL,
        job_id text NOT NULL,
        from_state text,
        to_state text NOT NULL,
        ts double precision NOT NULL,
        reason text NOT NULL DEFAULT '',
        PRIMARY KEY (site, store_id, id)
    );
    CREATE INDEX events_job ON balsamd.events (job_id);

    CREATE TABLE balsamd.batch_jobs (
        site text NOT NULL,
        id text NOT NULL,
        num_nodes integer NOT NULL,
        wall_time_min integer NOT NULL,
        job_mode text NOT NULL,
        project text NOT NULL,
        queue text NOT NULL,
        filter_tags jsonb NOT NULL,
        state text NOT NULL,
        scheduler_id text,
        status_info text NOT NULL,
        created_at double precision NOT NULL,
        start_time double precision,
        end_time double precision,
        origin text NOT NULL,
        PRIMARY KEY (site, id)
    );

    -- what users ask of a site: applied once by the site, then acknowledged here
    CREATE TABLE balsamd.intents (
        id text PRIMARY KEY,
        site text NOT NULL REFERENCES balsamd.sites (name),
        owner text NOT NULL DEFAULT current_user,
        kind text NOT NULL CHECK (kind IN ('create', 'kill', 'retry', 'update')),
        job_id text NOT NULL,
        payload jsonb NOT NULL DEFAULT '{}',
        created_at double precision NOT NULL,
        applied_at double precision,
        outcome text
    );
    CREATE INDEX intents_pending ON balsamd.intents (site, id) WHERE applied_at IS NULL;

    CREATE FUNCTION balsamd.notify_intent() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('balsamd_intents', NEW.site);
        RETURN NULL;
    END $$;
    CREATE TRIGGER intents_notify AFTER INSERT ON balsamd.intents
        FOR EACH ROW EXECUTE FUNCTION balsamd.notify_intent();
    """,
    # 2: an intent's outcome is a JSON document (models.IntentOutcome), never text to parse;
    # a site publishes the rules it checks requests against (validate.SiteRules), not only
    # its nodes' shape
    """
    ALTER TABLE balsamd.intents ALTER COLUMN outcome TYPE jsonb USING CASE
        WHEN outcome IS NULL THEN NULL
        WHEN outcome LIKE 'rejected: %' THEN jsonb_build_object('status', 'rejected', 'reason', substr(outcome, 11))
        WHEN outcome LIKE 'rejected%' THEN jsonb_build_object('status', 'rejected', 'reason', outcome)
        ELSE jsonb_build_object('status', 'applied') END;
    ALTER TABLE balsamd.sites RENAME COLUMN nodes TO rules;
    UPDATE balsamd.sites SET rules = '{}';
    """,
    # 3: a site inserts events only for jobs of its own (ACCESS): those a site attached to a job
    # of another site before that rule go
    """
    DELETE FROM balsamd.events e
        WHERE NOT EXISTS (SELECT 1 FROM balsamd.jobs j WHERE j.id = e.job_id AND j.site = e.site);
    """,
    # 4: a site numbers its acknowledgements (ack_seq, from its row's acked_seq, taken under that
    # row's lock so that one site's numbers commit in order) and finds those its store lost by
    # the numbers above what it has checked; a push carries a mark its store wrote after
    # reading what the push holds, so a store without central's mark is older than central's copy.
    # Acknowledgements made before are numbered now, per site in the order they were made.
    """
    ALTER TABLE balsamd.sites ADD COLUMN IF NOT EXISTS acked_seq bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS push_mark text;
    ALTER TABLE balsamd.intents ADD COLUMN IF NOT EXISTS ack_seq bigint;
    UPDATE balsamd.intents i SET ack_seq = n.seq
        FROM (SELECT id, row_number() OVER (PARTITION BY site ORDER BY applied_at, id) AS seq
              FROM balsamd.intents WHERE applied_at IS NOT NULL) n
        WHERE i.id = n.id;
    UPDATE balsamd.sites s SET acked_seq = COALESCE((SELECT max(ack_seq) FROM balsamd.intents WHERE site = s.name), 0);
    CREATE INDEX IF NOT EXISTS intents_acked ON balsamd.intents (site, ack_seq) WHERE ack_seq IS NOT NULL;
    """,
    # 5: batch jobs from anywhere: users ask a site for batch jobs (batch_create, naming the new
    # batch job's id) and remove those they asked for (batch_delete); a batch job carries its
    # partitions, its optional scheduler parameters and who asked for it ('' for the site's owner)
    """
    ALTER TABLE balsamd.batch_jobs ADD COLUMN IF NOT EXISTS partitions jsonb NOT NULL DEFAULT '[]',
        ADD COLUMN IF NOT EXISTS optional_params jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN IF NOT EXISTS owner text NOT NULL DEFAULT '';
    ALTER TABLE balsamd.intents DROP CONSTRAINT IF EXISTS intents_kind_check;
    ALTER TABLE balsamd.intents ADD CONSTRAINT intents_kind_check
        CHECK (kind IN ('create', 'kill', 'retry', 'update', 'batch_create', 'batch_delete'));
    """,
    # 6: a user may remove a job of theirs (kind 'delete': the site removes it, central follows),
    # and declare an app to a site (kind 'app', about no job: job_id ''), which the site
    # installs only if its owner named the user ([apps] accept_from)
    """
    ALTER TABLE balsamd.intents DROP CONSTRAINT IF EXISTS intents_kind_check;
    ALTER TABLE balsamd.intents ADD CONSTRAINT intents_kind_check
        CHECK (kind IN ('create', 'kill', 'retry', 'update', 'batch_create', 'batch_delete', 'delete', 'app'));
    """,
    # 7: the files a job brings in and sends out (models.JobSpec.transfers)
    """
    ALTER TABLE balsamd.jobs ADD COLUMN IF NOT EXISTS transfers jsonb NOT NULL DEFAULT '{}';
    """,
    # 8: each job's transfer items as its site moves them (transfers.records.TransferItem, its
    # ITEM_COLUMNS and the store's seq of the row), keyed by the site (an item's id is its store's)
    # and gone with their job; the site records how far it pushed them, as it does for jobs
    """
    CREATE TABLE IF NOT EXISTS balsamd.transfer_items (
        site text NOT NULL REFERENCES balsamd.sites (name),
        id bigint NOT NULL,
        job_id text NOT NULL REFERENCES balsamd.jobs (id) ON DELETE CASCADE,
        slot text NOT NULL,
        direction text NOT NULL,
        location text NOT NULL,
        path text NOT NULL,
        local_path text NOT NULL,
        recursive boolean NOT NULL,
        state text NOT NULL,
        task_id text,
        attempts integer NOT NULL,
        not_before double precision NOT NULL,
        bytes bigint NOT NULL,
        error text NOT NULL,
        updated_at double precision NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (site, id)
    );
    CREATE INDEX IF NOT EXISTS transfer_items_job ON balsamd.transfer_items (job_id);
    ALTER TABLE balsamd.sites ADD COLUMN IF NOT EXISTS pushed_transfer_seq bigint NOT NULL DEFAULT 0;
    """,
    # 9: a user may give a job of theirs more parents (kind 'add_parents', Balsam's `dep`); the
    # site checks that the parents are the user's too
    """
    ALTER TABLE balsamd.intents DROP CONSTRAINT IF EXISTS intents_kind_check;
    ALTER TABLE balsamd.intents ADD CONSTRAINT intents_kind_check CHECK (kind IN ('create', 'kill', 'retry',
        'update', 'batch_create', 'batch_delete', 'delete', 'app', 'add_parents'));
    """,
]

# What a site writes of a job: everything but its owner (a user's, or the site's role for jobs
# made at the site, by the column's default) and, once inserted, its id and site.
SITE_JOB_INSERT = ("site", *(c for c in JOB_COLUMNS if c != "owner"))
SITE_JOB_UPDATE = tuple(c for c in JOB_COLUMNS if c not in ("id", "owner"))
# What a site writes of a transfer item: every column but, once inserted, its key.
SITE_ITEM_COLUMNS = (*ITEM_COLUMNS, "seq")


def _columns(names: Sequence[str]) -> str:
    return ", ".join(names)


# Access rules, applied (and re-applied) by every `central init`: roles may not exist yet, and
# what an older balsamd granted is revoked first (a GRANT only ever adds).
ACCESS = f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'balsamd_site') THEN CREATE ROLE balsamd_site NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'balsamd_user') THEN CREATE ROLE balsamd_user NOLOGIN; END IF;
END $$;

REVOKE ALL ON balsamd.meta, balsamd.sites, balsamd.apps, balsamd.jobs, balsamd.events, balsamd.batch_jobs,
    balsamd.intents, balsamd.transfer_items FROM balsamd_site, balsamd_user;
GRANT USAGE ON SCHEMA balsamd TO balsamd_site, balsamd_user;
GRANT SELECT ON balsamd.meta TO balsamd_site, balsamd_user;
GRANT SELECT ON balsamd.sites TO balsamd_site, balsamd_user;
GRANT UPDATE (store_id, pushed_seq, pushed_event, pushed_transfer_seq, push_mark, acked_seq, rules, last_sync,
    last_error) ON balsamd.sites TO balsamd_site;
GRANT SELECT, INSERT, UPDATE, DELETE ON balsamd.apps TO balsamd_site;
GRANT SELECT ON balsamd.apps TO balsamd_user;
GRANT SELECT, DELETE ON balsamd.jobs TO balsamd_site;
GRANT INSERT ({_columns(SITE_JOB_INSERT)}) ON balsamd.jobs TO balsamd_site;
GRANT UPDATE ({_columns(SITE_JOB_UPDATE)}) ON balsamd.jobs TO balsamd_site;
-- events are appended, never changed; jobs removed at the site go from central with their events
GRANT SELECT, INSERT, DELETE ON balsamd.events TO balsamd_site;
-- a store that went back in time no longer has some batch jobs: central follows it
GRANT SELECT, INSERT, DELETE ON balsamd.batch_jobs TO balsamd_site;
GRANT UPDATE ({_columns([c for c in BATCH_COLUMNS if c != "id"])}) ON balsamd.batch_jobs TO balsamd_site;
GRANT SELECT, INSERT ON balsamd.jobs TO balsamd_user;
GRANT SELECT ON balsamd.events, balsamd.batch_jobs TO balsamd_user;
-- a site acknowledges an intent; what was asked, and by whom, stays as its user wrote it
GRANT SELECT ON balsamd.intents TO balsamd_site;
GRANT UPDATE (applied_at, outcome, ack_seq) ON balsamd.intents TO balsamd_site;
-- a user writes what is asked, never that it was done: an intent inserted as acknowledged would
-- never be applied, and an ack number of a user's choosing would hide a site's own from it
GRANT SELECT ON balsamd.intents TO balsamd_user;
GRANT INSERT (id, site, owner, kind, job_id, payload, created_at) ON balsamd.intents TO balsamd_user;
-- transfer items are the site's to write, and go only with their job (its foreign key); a user
-- reads those of their own jobs
GRANT SELECT, INSERT ON balsamd.transfer_items TO balsamd_site;
GRANT UPDATE ({_columns([c for c in SITE_ITEM_COLUMNS if c != "id"])}) ON balsamd.transfer_items TO balsamd_site;
GRANT SELECT ON balsamd.transfer_items TO balsamd_user;

-- Inside these SECURITY DEFINER functions current_user is their owner, so the policies pass
-- the caller's role in.  The sites' policies call site_of in a sub-select: evaluated once per
-- statement rather than once per row (a pushed batch is thousands of rows).
CREATE OR REPLACE FUNCTION balsamd.site_of(who name) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = balsamd, pg_temp AS $$ SELECT name FROM balsamd.sites WHERE role = who $$;
GRANT EXECUTE ON FUNCTION balsamd.site_of(name) TO balsamd_site, balsamd_user;

CREATE OR REPLACE FUNCTION balsamd.owns_job(job text, who name) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = balsamd, pg_temp
    AS $$ SELECT EXISTS (SELECT 1 FROM balsamd.jobs WHERE id = job AND owner = who) $$;
GRANT EXECUTE ON FUNCTION balsamd.owns_job(text, name) TO balsamd_user;

CREATE OR REPLACE FUNCTION balsamd.owns_batch_at(batch text, who name, at text) RETURNS boolean LANGUAGE sql
    STABLE SECURITY DEFINER SET search_path = balsamd, pg_temp
    AS $$ SELECT CASE WHEN EXISTS (SELECT 1 FROM balsamd.batch_jobs WHERE id = batch AND site = at)
        THEN EXISTS (SELECT 1 FROM balsamd.batch_jobs WHERE id = batch AND site = at AND owner = who)
        -- a request the site has not taken yet is its asker's
        ELSE EXISTS (SELECT 1 FROM balsamd.intents WHERE kind = 'batch_create' AND job_id = batch AND site = at
                     AND owner = who) END $$;
GRANT EXECUTE ON FUNCTION balsamd.owns_batch_at(text, name, text) TO balsamd_user;

CREATE OR REPLACE FUNCTION balsamd.owns_job_at(job text, who name, at text) RETURNS boolean LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = balsamd, pg_temp
    AS $$ SELECT EXISTS (SELECT 1 FROM balsamd.jobs WHERE id = job AND owner = who AND site = at) $$;
GRANT EXECUTE ON FUNCTION balsamd.owns_job_at(text, name, text) TO balsamd_user;

-- Which of these job ids central holds at another site than ``here``: a site cannot see those
-- rows, and must neither push over them nor create jobs under their ids.  It learns only that
-- an id it already knows is taken.
CREATE OR REPLACE FUNCTION balsamd.jobs_elsewhere(ids text[], here text) RETURNS SETOF text LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = balsamd, pg_temp
    AS $$ SELECT id FROM balsamd.jobs WHERE id = ANY(ids) AND site <> here $$;
REVOKE ALL ON FUNCTION balsamd.jobs_elsewhere(text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION balsamd.jobs_elsewhere(text[], text) TO balsamd_site;

ALTER TABLE balsamd.sites ENABLE ROW LEVEL SECURITY;
ALTER TABLE balsamd.apps ENABLE ROW LEVEL SECURITY;
ALTER TABLE balsamd.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE balsamd.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE balsamd.batch_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE balsamd.intents ENABLE ROW LEVEL SECURITY;
ALTER TABLE balsamd.transfer_items ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS site_own ON balsamd.sites;
CREATE POLICY site_own ON balsamd.sites TO balsamd_site USING (name = (SELECT balsamd.site_of(current_user)));
DROP POLICY IF EXISTS user_read ON balsamd.sites;
CREATE POLICY user_read ON balsamd.sites FOR SELECT TO balsamd_user USING (true);

DROP POLICY IF EXISTS site_own ON balsamd.apps;
CREATE POLICY site_own ON balsamd.apps TO balsamd_site USING (site = (SELECT balsamd.site_of(current_user)));
DROP POLICY IF EXISTS user_read ON balsamd.apps;
CREATE POLICY user_read ON balsamd.apps FOR SELECT TO balsamd_user USING (true);

DROP POLICY IF EXISTS site_own ON balsamd.jobs;
CREATE POLICY site_own ON balsamd.jobs TO balsamd_site USING (site = (SELECT balsamd.site_of(current_user)));
DROP POLICY IF EXISTS user_own ON balsamd.jobs;
CREATE POLICY user_own ON balsamd.jobs TO balsamd_user USING (owner = current_user) WITH CHECK (owner = current_user);

-- an event belongs to a job of the site that writes it (the job's row is pushed first): no site
-- can attach events to another site's or user's job
DROP POLICY IF EXISTS site_own ON balsamd.events;
CREATE POLICY site_own ON balsamd.events TO balsamd_site USING (site = (SELECT balsamd.site_of(current_user)))
    WITH CHECK (site = (SELECT balsamd.site_of(current_user))
                AND EXISTS (SELECT 1 FROM balsamd.jobs j WHERE j.id = events.job_id AND j.site = events.site));
DROP POLICY IF EXISTS user_own ON balsamd.events;
CREATE POLICY user_own ON balsamd.events FOR SELECT TO balsamd_user USING (balsamd.owns_job(job_id, current_user));

-- an item belongs to a job of the site that writes it (the job's row is pushed first); a user
-- sees the items of the jobs they own, by the rule that shows them their jobs
DROP POLICY IF EXISTS site_own ON balsamd.transfer_items;
CREATE POLICY site_own ON balsamd.transfer_items TO balsamd_site
    USING (site = (SELECT balsamd.site_of(current_user)))
    WITH CHECK (site = (SELECT balsamd.site_of(current_user))
                AND EXISTS (SELECT 1 FROM balsamd.jobs j
                            WHERE j.id = transfer_items.job_id AND j.site = transfer_items.site));
DROP POLICY IF EXISTS user_own ON balsamd.transfer_items;
CREATE POLICY user_own ON balsamd.transfer_items FOR SELECT TO balsamd_user
    USING (EXISTS (SELECT 1 FROM balsamd.jobs j WHERE j.id = transfer_items.job_id AND j.owner = current_user));

DROP POLICY IF EXISTS site_own ON balsamd.batch_jobs;
CREATE POLICY site_own ON balsamd.batch_jobs TO balsamd_site USING (site = (SELECT balsamd.site_of(current_user)));
DROP POLICY IF EXISTS user_read ON balsamd.batch_jobs;
CREATE POLICY user_read ON balsamd.batch_jobs FOR SELECT TO balsamd_user USING (true);

DROP POLICY IF EXISTS site_own ON balsamd.intents;
CREATE POLICY site_own ON balsamd.intents TO balsamd_site USING (site = (SELECT balsamd.site_of(current_user)));
-- a user asks only as themselves and only about a job of theirs at that site (a create names
-- the first of the jobs it comes with), or a batch job they asked for there; any user may ask a
-- registered site for a new batch job, or declare an app to it, about no job.  The site checks
-- the rest (store/intents.py), and installs an app only from users its owner named
DROP POLICY IF EXISTS user_own ON balsamd.intents;
CREATE POLICY user_own ON balsamd.intents TO balsamd_user USING (owner = current_user)
    WITH CHECK (owner = current_user AND CASE kind
        WHEN 'batch_create' THEN true
        WHEN 'batch_delete' THEN balsamd.owns_batch_at(job_id, current_user, site)
        WHEN 'app' THEN job_id = ''
        ELSE balsamd.owns_job_at(job_id, current_user, site) END);
"""


class CentralError(Exception):
    """The central database refused or is not what balsamd expects; the message says why."""


def scalar(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the one row ``query`` always returns."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise CentralError(f"the central database returned no row for: {query}")
    return row[0]


def schema_version(conn: psycopg.Connection) -> int:
    exists = scalar(conn, "SELECT to_regclass('balsamd.meta') IS NOT NULL")
    if not exists:
        return 0
    row = conn.execute("SELECT value FROM balsamd.meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 1


def check_version(version: int) -> None:
    """Refuse a central schema this balsamd cannot work with, saying what to run."""
    if version > len(MIGRATIONS):
        raise CentralError(
            f"the central schema is at version {version}, newer than this balsamd understands "
            f"(version {len(MIGRATIONS)}); upgrade balsamd here to the version that initialised it"
        )
    if version < len(MIGRATIONS):
        raise CentralError(
            f"the central schema is at version {version}, older than this balsamd (version "
            f"{len(MIGRATIONS)}); its administrator upgrades it with `balsamd central init DSN`"
        )


def migrate(conn: psycopg.Connection) -> tuple[int, int]:
    """Create or upgrade the central schema and its access rules; returns (from, to) versions."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('balsamd.migrate'))")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        before = schema_version(conn)
        if before > len(MIGRATIONS):
            raise CentralError(
                f"the central schema is at version {before}, newer than this balsamd "
                f"(version {len(MIGRATIONS)}); nothing was changed: upgrade balsamd and run "
                "`balsamd central init` again"
            )
        for step in MIGRATIONS[before:]:
            conn.execute(step)
        conn.execute(
            "INSERT INTO balsamd.meta VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(len(MIGRATIONS)),),
        )
        conn.execute(ACCESS)
    return before, len(MIGRATIONS)


def add_site(conn: psycopg.Connection, name: str, role: str | None, password: str | None = None) -> None:
    """Register a site; with a role, create it (LOGIN) if needed and let it act for this site only."""
    with conn.transaction():
        if role:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            if password:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
            conn.execute(sql.SQL("GRANT balsamd_site TO {}").format(sql.Identifier(role)))
        conn.execute(
            "INSERT INTO balsamd.sites (name, role) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET role = excluded.role",
            (name, role),
        )


def add_user(conn: psycopg.Connection, role: str, password: str | None = None) -> None:
    """Let a PostgreSQL role create and follow its own jobs on any site."""
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        if password:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT balsamd_user TO {}").format(sql.Identifier(role)))
