-- Atelier products: the normalized catalog and the stored response documents.
-- Every statement is idempotent: `atelier load` and `materialize` (and `serve` on the
-- embedded database) apply this file first, and `psql -f schema.sql` works too.

-- The catalog, one table per CSV file. `atelier load` replaces all six tables at once
-- (it builds new ones in a staging schema and swaps them in inside one transaction), so
-- the live tables are never written row by row. Prices are whole dollars in the files;
-- numeric(12,2) keeps them exact and prints them with two decimals.
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

-- The served documents: one row per product, holding the exact response bodies.
-- `position` is the product's 1-based rank in id order, so page P of C entries is the
-- index range (P-1)*C+1 ..= P*C: O(log n) whatever P is. `atelier materialize`
-- rebuilds this table and swaps it in atomically; servers only ever read it.
CREATE TABLE IF NOT EXISTS document (
    product_id integer PRIMARY KEY,
    position   integer NOT NULL,
    list_entry jsonb   NOT NULL,  -- the product's entry in GET /products
    product    jsonb   NOT NULL,  -- GET /products/:id
    styles     jsonb   NOT NULL,  -- GET /products/:id/styles
    related    jsonb   NOT NULL,  -- GET /products/:id/related
    -- Deferrable so that a partial rebuild can renumber positions in one statement.
    CONSTRAINT document_position_key UNIQUE (position) DEFERRABLE INITIALLY IMMEDIATE
);

-- One row per completed load or materialize, for operators and readiness checks.
CREATE TABLE IF NOT EXISTS catalog_run (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('load', 'materialize')),
    finished_at timestamptz NOT NULL DEFAULT now(),
    summary     jsonb       NOT NULL
);

-- The role servers read as: it logs in, reads the documents and whether a materialize
-- has completed (`catalog_run.kind`, for /readyz), and nothing else. Roles are
-- cluster-wide while this file is applied per database, possibly by several databases
-- at once, so creating the role tolerates losing that race. Grants are made only when
-- missing, so re-applying writes no catalog row. The materialize swap creates a new
-- `document` table, and re-applying this file grants on it again. A role applying this
-- file without the right to create roles leaves the reader to the operator.
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
