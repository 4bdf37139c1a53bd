-- Atelier products: the normalized catalog and the stored response documents.
-- Every statement is idempotent: `atelier load` and `materialize` (and `serve` on the
-- embedded database) apply this file first, and `psql -f schema.sql` works too.

-- The catalog, one table per CSV file. `atelier load` replaces all six tables at once
-- (it builds new ones in a staging schema and swaps them in inside one transaction);
-- `atelier load --changes` and any other application write rows in place, and the
-- capture triggers below note which products that touches. Prices are whole dollars in
-- the files; numeric(12,2) keeps them exact and prints them with two decimals.
CREATE TABLE IF NOT EXISTS product (
    id            integer       PRIMARY KEY CHECK (id > 0),
    name          text          NOT NULL,
    slogan        text          NOT NULL,
    description   text          NOT NULL,
    category      text          NOT NULL,
    default_price numeric(12,2) NOT NULL CHECK (default_price >= 0),
    -- When a load first saw the product, and when a load last changed it.
    created_at    timestamptz   NOT NULL DEFAULT now(),
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    -- Hash of the product's row and all rows that belong to it, computed by the loader;
    -- a change between two loads moves updated_at.
    fingerprint   bigint        NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS style (
    id             integer       PRIMARY KEY CHECK (id > 0),
    product_id     integer       NOT NULL REFERENCES product (id),
    name           text          NOT NULL,
    sale_price     numeric(12,2) CHECK (sale_price >= 0),
    original_price numeric(12,2) NOT NULL CHECK (original_price >= 0),
    default_style  boolean       NOT NULL
);
CREATE INDEX IF NOT EXISTS style_product_id_idx ON style (product_id);

CREATE TABLE IF NOT EXISTS feature (
    id         integer PRIMARY KEY CHECK (id > 0),
    product_id integer NOT NULL REFERENCES product (id),
    feature    text    NOT NULL,
    value      text
);
CREATE INDEX IF NOT EXISTS feature_product_id_idx ON feature (product_id);

CREATE TABLE IF NOT EXISTS photo (
    id            integer PRIMARY KEY CHECK (id > 0),
    style_id      integer NOT NULL REFERENCES style (id),
    url           text    NOT NULL,
    thumbnail_url text    NOT NULL
);
CREATE INDEX IF NOT EXISTS photo_style_id_idx ON photo (style_id);

CREATE TABLE IF NOT EXISTS sku (
    id       integer PRIMARY KEY CHECK (id > 0),
    style_id integer NOT NULL REFERENCES style (id),
    size     text    NOT NULL,
    quantity integer NOT NULL CHECK (quantity >= 0)
);
CREATE INDEX IF NOT EXISTS sku_style_id_idx ON sku (style_id);

CREATE TABLE IF NOT EXISTS related (
    id                 integer PRIMARY KEY CHECK (id > 0),
    product_id         integer NOT NULL REFERENCES product (id),
    related_product_id integer NOT NULL REFERENCES product (id)
);
CREATE INDEX IF NOT EXISTS related_product_id_idx ON related (product_id);
-- Deleting a product makes PostgreSQL look for related rows naming it: without this
-- index, one scan of the whole table per product deleted.
CREATE INDEX IF NOT EXISTS related_related_product_id_idx ON related (related_product_id);

-- The served documents: one row per product, holding the exact response bodies.
-- `atelier materialize` writes them (a full rebuild swaps in a new table atomically, a
-- partial one rewrites rows in place); servers only ever read them.
CREATE TABLE IF NOT EXISTS document (
    product_id integer PRIMARY KEY,
    list_entry jsonb   NOT NULL,  -- the product's entry in GET /products
    product    jsonb   NOT NULL,  -- GET /products/:id
    styles     jsonb   NOT NULL,  -- GET /products/:id/styles
    related    jsonb   NOT NULL,  -- GET /products/:id/related
    -- The gzip forms of the three bodies above, as servers send them to clients that
    -- take gzip (src/documents/gzip.rs), and inflate them for the others: made by
    -- materialize after the bodies, NULL until then (a server then reads the body and
    -- compresses it itself, to the same bytes), empty when gzip does not gain. A body
    -- rewritten with different bytes loses its form in the same statement: where a
    -- form is stored, every client is answered from it.
    product_gzip bytea,
    styles_gzip  bytea,
    related_gzip bytea
);
-- Documents built before the gzip forms were stored get the columns here, empty. The
-- forms are compressed already: stored as they are, and the first moved out of a row
-- grown past PostgreSQL's 2 kB, before the bodies would be compressed in place. Altered
-- only when it differs, as below: an ALTER locks out every reader of the table.
DO $gzip_columns$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'public.document'::regclass
                     AND attname = 'related_gzip' AND NOT attisdropped) THEN
        ALTER TABLE public.document ADD COLUMN IF NOT EXISTS product_gzip bytea,
                                    ADD COLUMN IF NOT EXISTS styles_gzip bytea,
                                    ADD COLUMN IF NOT EXISTS related_gzip bytea;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = 'public.document'::regclass
                 AND attname IN ('product_gzip', 'styles_gzip', 'related_gzip')
                 AND attstorage <> 'e') THEN
        ALTER TABLE public.document ALTER COLUMN product_gzip SET STORAGE EXTERNAL,
                                    ALTER COLUMN styles_gzip SET STORAGE EXTERNAL,
                                    ALTER COLUMN related_gzip SET STORAGE EXTERNAL;
    END IF;
END
$gzip_columns$;
-- Documents once carried their list rank in a `position` column, which made every
-- product added or removed mid-list renumber all the documents after it; list_block
-- below replaces it.
ALTER TABLE document DROP COLUMN IF EXISTS position;
-- Followers rewrite documents in place all day. A list rank or page counts entries of
-- document_pkey, which skips the heap only on pages the visibility map marks
-- all-visible, and each rewrite clears its page's mark until a vacuum. By default
-- autovacuum waits for a fifth of the table to be dead rows; by then counting 125 ranks
-- visited 13,000 heap pages (833 ms, against 9 ms after a VACUUM). So the table is
-- vacuumed after every 10,000 rewritten rows, whatever its size. Set only when it
-- differs, so re-applying this file (after every full rebuild's swap, whose new table
-- LIKE does not give the setting) writes no catalog row otherwise.
DO $vacuum$
BEGIN
    IF NOT coalesce((SELECT reloptions FROM pg_class WHERE oid = 'public.document'::regclass)
                    @> ARRAY['autovacuum_vacuum_scale_factor=0',
                             'autovacuum_vacuum_threshold=10000'], false) THEN
        ALTER TABLE public.document
            SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
    END IF;
END
$vacuum$;

-- The rank index of GET /products: page P of C entries starts at rank r = (P-1)*C+1.
-- Documents are cut into blocks of consecutive ids; `start` is the number of documents
-- before the block. The entry at rank r is found from the last block with start < r,
-- skipping r - start - 1 ids of the document key, so a page costs O(log n + block).
-- Adding or removing a product shifts the `start` of the blocks after it, a few hundred
-- narrow rows at 1 M products instead of every document after it. The first block
-- starts at id 0, so every id has a block. A full materialize cuts blocks of 256 afresh
-- (materialize::list::BLOCK); partial ones split blocks that grew past twice that.
CREATE TABLE IF NOT EXISTS list_block (
    first_id integer PRIMARY KEY CHECK (first_id >= 0),
    start    integer NOT NULL CHECK (start >= 0)
);
CREATE INDEX IF NOT EXISTS list_block_start_idx ON list_block (start, first_id);
-- A database whose documents predate list_block gets its blocks here, once.
INSERT INTO list_block (first_id, start)
SELECT CASE WHEN rank = 1 THEN 0 ELSE product_id END, rank - 1
FROM (SELECT product_id, row_number() OVER (ORDER BY product_id) AS rank FROM document) d
WHERE rank % 256 = 1 AND NOT EXISTS (SELECT 1 FROM list_block);
INSERT INTO list_block (first_id, start)
SELECT 0, 0 WHERE NOT EXISTS (SELECT 1 FROM list_block);

-- Change capture. Products whose documents are stale, one row per writing statement and
-- product: appended by the triggers below inside the writer's own transaction, and by a
-- load's swap for the products it added, changed or removed; taken and deleted by
-- materialize (`--follow`, or once after a load) in the transaction that rewrites their
-- documents. Rows are only ever inserted and deleted: writers never wait for each other
-- or for materialize here, and a row becomes visible only when its writer commits, so
-- whoever takes it rebuilds from a snapshot holding the change. product_id 0 stands for
-- every product (a TRUNCATE; `documents::EVERY_PRODUCT`). `parts` holds the bits of the
-- document kinds built directly from the written table (the registry of kinds in
-- src/documents/kind.rs: 1 the list entry, from a product row, which the product body
-- embeds; 2 the product body, from features; 4 the styles body, from styles, photos and
-- skus; 8 the related body); a change of stock, price or photos alone rebuilds only the
-- styles body. The capture triggers below pass these bits, and a test holds them to the
-- registry.
CREATE TABLE IF NOT EXISTS document_queue (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id integer     NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now(),
    parts      smallint    NOT NULL DEFAULT 15
);
ALTER TABLE document_queue ADD COLUMN IF NOT EXISTS parts smallint NOT NULL DEFAULT 15;

-- What materialize announced to servers, kept an hour (`documents::NOTICE_RETENTION`):
-- every NOTIFY on atelier_documents is logged here in the same transaction, and its
-- payload names the row's `seq`. A server whose LISTEN connection was down (a dropped
-- connection, a failover) catches up on exactly the notices committed while it was away,
-- those its last snapshot of the primary (`pg_current_snapshot()`) does not show as
-- committed, instead of dropping its whole cache; away longer than the log is kept, it
-- drops everything. `xid` is the writing transaction, which is what snapshots compare
-- (seq order is not commit order); `sent_at` is the time of logging, near the commit,
-- which the pruning (in materialize, at every announcement) goes by.
CREATE TABLE IF NOT EXISTS document_notice (
    seq     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid     xid8        NOT NULL DEFAULT pg_current_xact_id(),
    sent_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    payload text        NOT NULL
);
CREATE INDEX IF NOT EXISTS document_notice_xid_idx ON document_notice (xid);
CREATE INDEX IF NOT EXISTS document_notice_sent_at_idx ON document_notice (sent_at);

-- Until when (milliseconds since the epoch) a follower at work promises to look at the
-- queue again: writers queuing rows before then need not wake it (see
-- `atelier_wake_followers`).
CREATE SEQUENCE IF NOT EXISTS atelier_follower_awake AS bigint MINVALUE 0;

-- Products whose rows changed since the last full load by other writers than that load
-- (SQL, `load --changes`), so their stored fingerprint no longer describes them: the
-- next full load counts them as changed whatever their fingerprint. Emptied by every
-- full load's swap; 0 stands for every product (`documents::EVERY_PRODUCT`).
CREATE TABLE IF NOT EXISTS product_edited (
    product_id integer PRIMARY KEY
);

-- The capture functions, created or replaced only when their version differs, so that
-- re-applying this file writes no catalog row. The trigger functions run as the
-- tables' owner: an application allowed to write a catalog table need not be allowed to
-- write the queue, and only they may call `atelier_mark`. They run on every writing
-- statement, so they carry no `SET search_path` (a function setting it costs more than
-- the rest of the capture); instead every name in them that a caller's search_path
-- could redirect is qualified (`pg_catalog.unnest`, `OPERATOR(pg_catalog.=)`, `public.`),
-- and the transition tables are found before any table. Photos and skus reach their
-- product through their style, looked up one style at a time (LATERAL ... LIMIT 1):
-- plans of trigger statements are cached, and a plan first made for a bulk statement
-- must not scan the style table for every later one-row statement.
DO $capture$
DECLARE
    version constant text := 'atelier capture 9';
    mark regprocedure := to_regprocedure('public.atelier_mark(integer[],smallint)');
    old record;
BEGIN
    IF mark IS NOT NULL AND obj_description(mark, 'pg_proc') IS NOT DISTINCT FROM version THEN
        RETURN;
    END IF;
    -- Triggers of an earlier version are made again below, with this version's arguments.
    FOR old IN
        SELECT t.tgname, t.tgrelid::regclass AS rel FROM pg_trigger t
        WHERE t.tgname LIKE 'atelier\_capture\_%' AND NOT t.tgisinternal
          AND t.tgrelid IN ('public.product'::regclass, 'public.style'::regclass,
                            'public.feature'::regclass, 'public.photo'::regclass,
                            'public.sku'::regclass, 'public.related'::regclass)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', old.tgname, old.rel);
    END LOOP;
    DROP FUNCTION IF EXISTS public.atelier_mark(integer[]);
    -- PL/pgSQL keeps its statements' plans for the session, where an SQL function with
    -- settings of its own would plan both inserts at every call.
    CREATE OR REPLACE FUNCTION public.atelier_mark(ids integer[], parts smallint) RETURNS void
    LANGUAGE plpgsql AS $body$
    BEGIN
        -- A statement that touched no row queues nothing and wakes nobody.
        IF pg_catalog.cardinality(ids) OPERATOR(pg_catalog.=) 0 THEN
            RETURN;
        END IF;
        INSERT INTO public.document_queue (product_id, parts)
        SELECT pg_catalog.unnest(ids), parts;
        INSERT INTO public.product_edited (product_id)
        SELECT pg_catalog.unnest(ids) ON CONFLICT DO NOTHING;
    END
    $body$;
    REVOKE ALL ON FUNCTION public.atelier_mark(integer[], smallint) FROM PUBLIC;

    CREATE OR REPLACE FUNCTION public.atelier_capture_product() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER AS $body$
    BEGIN
        IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
            PERFORM public.atelier_mark(ARRAY(SELECT id FROM new_rows), 1::smallint);
        ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
            PERFORM public.atelier_mark(ARRAY(SELECT id FROM new_rows UNION SELECT id FROM old_rows),
                                       1::smallint);
        ELSE
            PERFORM public.atelier_mark(ARRAY(SELECT id FROM old_rows), 1::smallint);
        END IF;
        RETURN NULL;
    END
    $body$;

    CREATE OR REPLACE FUNCTION public.atelier_capture_product_child() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER AS $body$
    DECLARE
        -- 2 (features), 4 (styles) or 8 (related rows), the trigger's argument.
        parts constant smallint := TG_ARGV[0]::smallint;
    BEGIN
        IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
            PERFORM public.atelier_mark(ARRAY(SELECT DISTINCT product_id FROM new_rows), parts);
        ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
            PERFORM public.atelier_mark(ARRAY(
                SELECT product_id FROM new_rows UNION SELECT product_id FROM old_rows), parts);
        ELSE
            PERFORM public.atelier_mark(ARRAY(SELECT DISTINCT product_id FROM old_rows), parts);
        END IF;
        RETURN NULL;
    END
    $body$;

    CREATE OR REPLACE FUNCTION public.atelier_capture_style_child() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER AS $body$
    BEGIN
        IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
            PERFORM public.atelier_mark(ARRAY(
                SELECT DISTINCT s.product_id
                FROM (SELECT DISTINCT style_id FROM new_rows) r
                CROSS JOIN LATERAL (SELECT product_id FROM public.style
                                    WHERE id OPERATOR(pg_catalog.=) r.style_id LIMIT 1) s),
                4::smallint);
        ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
            PERFORM public.atelier_mark(ARRAY(
                SELECT DISTINCT s.product_id
                FROM (SELECT style_id FROM new_rows UNION SELECT style_id FROM old_rows) r
                CROSS JOIN LATERAL (SELECT product_id FROM public.style
                                    WHERE id OPERATOR(pg_catalog.=) r.style_id LIMIT 1) s),
                4::smallint);
        ELSE
            PERFORM public.atelier_mark(ARRAY(
                SELECT DISTINCT s.product_id
                FROM (SELECT DISTINCT style_id FROM old_rows) r
                CROSS JOIN LATERAL (SELECT product_id FROM public.style
                                    WHERE id OPERATOR(pg_catalog.=) r.style_id LIMIT 1) s),
                4::smallint);
        END IF;
        RETURN NULL;
    END
    $body$;

    -- A TRUNCATE is rare: this one may pin its search_path.
    CREATE OR REPLACE FUNCTION public.atelier_capture_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
    BEGIN
        PERFORM public.atelier_mark(ARRAY[0], 15::smallint);
        RETURN NULL;
    END
    $body$;

    -- Wakes the followers LISTENing on `atelier_queue` when rows enter the queue, from
    -- whichever writer: delivered at its commit, so an idle follower need not poll. A
    -- follower at work promises to look at the queue again until the time in
    -- `atelier_follower_awake` (milliseconds since the epoch, set with setval: read and
    -- written without a transaction's snapshot or dead rows), so a writer whose
    -- statement runs at least 250 ms before that time skips the NOTIFY and the lock it
    -- takes at commit, which would otherwise serialize concurrent writers' commits
    -- (follow.rs). A writer that commits more than 250 ms after its statement, past the
    -- promise, is found by the follower's next look within its safety poll.
    CREATE OR REPLACE FUNCTION public.atelier_wake_followers() RETURNS trigger
    LANGUAGE plpgsql AS $body$
    BEGIN
        IF (SELECT last_value FROM public.atelier_follower_awake)
           OPERATOR(pg_catalog.<)
           (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000
            OPERATOR(pg_catalog.+) 250)
        THEN
            PERFORM pg_catalog.pg_notify('atelier_queue', '');
        END IF;
        RETURN NULL;
    END
    $body$;
    DROP TRIGGER IF EXISTS atelier_wake_followers ON public.document_queue;
    CREATE TRIGGER atelier_wake_followers AFTER INSERT ON public.document_queue
        FOR EACH STATEMENT EXECUTE FUNCTION public.atelier_wake_followers();

    EXECUTE format('COMMENT ON FUNCTION public.atelier_mark(integer[], smallint) IS %L', version);
END
$capture$;

-- The capture triggers, one per table and statement kind (a trigger with transition
-- tables takes one kind only). A load's new tables get theirs when it swaps them in and
-- re-applies this file; its own COPY into the staging tables is not captured.
DO $triggers$
DECLARE
    capture record;
    event text;
BEGIN
    FOR capture IN
        SELECT * FROM (VALUES ('product', 'atelier_capture_product', ''),
                              ('style', 'atelier_capture_product_child', '4'),
                              ('feature', 'atelier_capture_product_child', '2'),
                              ('related', 'atelier_capture_product_child', '8'),
                              ('photo', 'atelier_capture_style_child', ''),
                              ('sku', 'atelier_capture_style_child', '')) AS t (tbl, fn, arg)
    LOOP
        FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM pg_trigger
                WHERE tgrelid = format('public.%I', capture.tbl)::regclass
                  AND tgname = 'atelier_capture_' || event);
            EXECUTE format(
                'CREATE TRIGGER %I AFTER %s ON public.%I %s FOR EACH STATEMENT '
                'EXECUTE FUNCTION public.%I(%s)',
                'atelier_capture_' || event, upper(event), capture.tbl,
                CASE event
                    WHEN 'insert' THEN 'REFERENCING NEW TABLE AS new_rows'
                    WHEN 'update' THEN 'REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows'
                    WHEN 'delete' THEN 'REFERENCING OLD TABLE AS old_rows'
                    ELSE ''
                END,
                CASE event WHEN 'truncate' THEN 'atelier_capture_truncate' ELSE capture.fn END,
                CASE WHEN event = 'truncate' OR capture.arg = '' THEN '' ELSE quote_literal(capture.arg) END);
        END LOOP;
    END LOOP;
END
$triggers$;

-- One row per completed load or materialize, for operators and readiness checks.
CREATE TABLE IF NOT EXISTS catalog_run (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('load', 'materialize')),
    finished_at timestamptz NOT NULL DEFAULT now(),
    summary     jsonb       NOT NULL
);

-- The role servers read as: it logs in, reads the documents, the list's blocks, the
-- notice log and whether a materialize has completed (`catalog_run.kind`, for /readyz),
-- and nothing else. Roles are cluster-wide while this file is applied per database,
-- possibly by several databases at once, so creating the role tolerates losing that
-- race. Grants are made only when missing, so re-applying writes no catalog row. The
-- materialize swap creates a new `document` table, and re-applying this file grants on
-- it again. A role applying this file without the right to create roles leaves the
-- reader to the operator.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'atelier_reader') THEN
        BEGIN
            CREATE ROLE atelier_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                NOINHERIT NOREPLICATION NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role atelier_reader not created: % lacks CREATEROLE', current_user;
                RETURN;
        END;
    END IF;
    IF NOT has_database_privilege('atelier_reader', current_database(), 'CONNECT') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO atelier_reader', current_database());
    END IF;
    IF NOT has_table_privilege('atelier_reader', 'public.document', 'SELECT') THEN
        GRANT SELECT ON public.document TO atelier_reader;
    END IF;
    IF NOT has_table_privilege('atelier_reader', 'public.list_block', 'SELECT') THEN
        GRANT SELECT ON public.list_block TO atelier_reader;
    END IF;
    IF NOT has_table_privilege('atelier_reader', 'public.document_notice', 'SELECT') THEN
        GRANT SELECT ON public.document_notice TO atelier_reader;
    END IF;
    IF NOT has_column_privilege('atelier_reader', 'public.catalog_run', 'kind', 'SELECT') THEN
        GRANT SELECT (kind) ON public.catalog_run TO atelier_reader;
    END IF;
    -- PostgreSQL 15 and later deny every role CREATE in schema public; older versions
    -- granted it to PUBLIC, which would let the reader create tables.
    IF has_schema_privilege('atelier_reader', 'public', 'CREATE') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    END IF;
END
$$;
