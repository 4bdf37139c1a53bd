"""The catalog a run reads and the requests it sends: a loaded, materialized catalog
(prepared under bench/work/ or given), each scenario's URL list drawn from it, the
documents behind that list as nginx's document root, and pgbench scripts running the
service's own cache-miss queries."""

import bisect
import datetime
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys

from .machine import WORK, log, run

FULL_PRODUCTS = 1_000_011
LIST_COUNT = 5
ZIPF_S = 1.01


def prepare_catalog(args):
    """The database URL of a loaded, materialized catalog, preparing one if needed."""
    if args.database_url:
        return args.database_url
    data_dir = args.data_dir or os.path.join(WORK, f"pg-{args.products}")
    ready = os.path.join(WORK, f"ready-{args.products}")
    own = args.data_dir is None
    if own and not os.path.exists(ready):
        catalog = os.path.join(WORK, f"catalog-{args.products}")
        if not os.path.exists(os.path.join(catalog, "related.csv")):
            run([args.atelier, "generate", "--products", str(args.products), "--out", catalog])
        run([args.atelier, "load", catalog, "--data-dir", data_dir])
        run([args.atelier, "materialize", "--data-dir", data_dir])
        with open(ready, "w") as f:
            f.write(datetime.datetime.now(datetime.UTC).isoformat() + "\n")
    # Exits 3 when the cluster is stopped: the output tells.
    status = subprocess.run(
        [args.atelier, "db", "status", "--data-dir", data_dir],
        capture_output=True, text=True,
    ).stdout.strip()
    if not status.startswith("running: "):
        # Any command starts the embedded cluster; a materialize of one product is the
        # cheapest that leaves the catalog as it was, and only runs on our own cluster.
        if not own:
            sys.exit(f"the cluster in {data_dir} is not running ({status}); start it first")
        run([args.atelier, "materialize", "--products", "1", "--data-dir", data_dir])
        status = subprocess.run(
            [args.atelier, "db", "status", "--data-dir", data_dir],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    return status.removeprefix("running: ")


def psql(url, sql):
    return subprocess.run(
        ["psql", url, "-X", "-At", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=sql, check=True, capture_output=True, text=True,
    ).stdout


def prewarm(url):
    """Reads the document table, its TOAST table and its key into the OS page cache, so
    that pgbench, which draws ids over every product, reads from memory as the service's
    warmed-up sample does, not from disk (a catalog just loaded has pushed them out)."""
    try:
        psql(url, "CREATE EXTENSION IF NOT EXISTS pg_prewarm; "
                  "SELECT pg_prewarm('document', 'read'), pg_prewarm('document_pkey', 'read'), "
                  "pg_prewarm(reltoastrelid, 'read') FROM pg_class "
                  "WHERE oid = 'document'::regclass;")
    except subprocess.CalledProcessError as error:
        log(f"cannot prewarm the document table ({error}); pgbench may read from disk")


# ---------------------------------------------------------------- request mixes


class Mix:
    """The requests of a scenario: URL paths (with repeats, in random order), the
    documents behind them, and pgbench scripts running the lookups behind a cache miss:
    `pgbench_scripts` each document's JSON as a server without stored forms reads it,
    `form_scripts` (where the mix reads documents by id) the statements the service runs,
    which read the stored gzip form where there is one."""

    def __init__(self, name, paths, pgbench_scripts, form_scripts=None):
        self.name = name
        self.paths = paths
        self.pgbench_scripts = pgbench_scripts
        self.form_scripts = form_scripts or {}
        self.documents = {}

    def mean_size(self):
        sizes = [len(self.documents[p]) for p in self.paths if p in self.documents]
        return round(statistics.fmean(sizes)) if sizes else 1000


PRODUCT_QUERIES = {
    "product": "SELECT product FROM document WHERE product_id = :id;",
    "styles": "SELECT styles FROM document WHERE product_id = :id;",
    "related": "SELECT related FROM document WHERE product_id = :id;",
}

# The service's by-id statements (`read_columns` in src/http/store.rs): the JSON only
# where no gzip form that gains is stored, and the form.
FORM_QUERIES = {
    f"forms-{kind}": f"SELECT CASE WHEN octet_length({kind}_gzip) > 0 THEN NULL ELSE {kind} END, "
                     f"{kind}_gzip FROM document WHERE product_id = :id;"
    for kind in PRODUCT_QUERIES
}


def product_scripts(id_expression, queries=PRODUCT_QUERIES):
    return {
        name: f"\\set id {id_expression}\n{query}\n" for name, query in queries.items()
    }


def zipf_sampler(n, s, rng):
    """Draws ranks 1..n with P(k) ∝ 1/k^s, by bisection on the cumulative weights."""
    cumulative, total = [], 0.0
    for k in range(1, n + 1):
        total += 1.0 / k**s
        cumulative.append(total)
    return lambda: bisect.bisect_left(cumulative, rng.random() * total) + 1


def zipf_ids(products, sample, rng):
    """`sample` product ids drawn as a storefront's visitors pick products: popularity
    follows Zipf (s = ZIPF_S) over ranks scattered across the ids, a rank always naming
    the same product."""
    draw = zipf_sampler(products, ZIPF_S, rng)
    scatter = {}
    # draw() before randint(): the order every scenario's list was drawn in.
    return [scatter.setdefault(draw(), rng.randint(1, products)) for _ in range(sample)]


def build_mix(kind, products, sample, rng):
    """The requests of a scenario of that `kind` (hot, uniform, list; storefront, or a
    scenario driven with its mix) over a catalog of `products`: `sample` product ids
    (or pages) drawn with `rng`."""
    suffixes = ["", "/styles", "/related"]
    if kind == "hot":
        first = products - products // 10 + 1
        ids = [rng.randint(first, products) for _ in range(sample)]
        paths = [f"/products/{i}{s}" for i in ids for s in suffixes]
        rng.shuffle(paths)
        return Mix(kind, paths, product_scripts(f"random({first}, {products})"))
    if kind == "uniform":
        ids = [rng.randint(1, products) for _ in range(sample)]
        paths = [f"/products/{i}{s}" for i in ids for s in suffixes]
        rng.shuffle(paths)
        draw = f"random(1, {products})"
        return Mix(kind, paths, product_scripts(draw), product_scripts(draw, FORM_QUERIES))
    if kind == "list":
        last_page = max(1, products // LIST_COUNT)
        pages = [rng.randint(1, last_page) for _ in range(sample)]
        paths = [f"/products?page={p}&count={LIST_COUNT}" for p in pages]
        # The service's page query (documents::PAGE_SQL) with the page's ranks.
        script = (
            f"\\set page random(1, {last_page})\n"
            f"\\set first (:page - 1) * {LIST_COUNT} + 1\n"
            f"SELECT d.list_entry FROM document d WHERE d.product_id >= ("
            f"SELECT x.product_id FROM (SELECT first_id, start FROM list_block "
            f"WHERE start < :first ORDER BY start DESC, first_id DESC LIMIT 1) b "
            f"CROSS JOIN LATERAL (SELECT product_id FROM document WHERE product_id >= b.first_id "
            f"ORDER BY product_id OFFSET :first - b.start - 1 LIMIT 1) x) "
            f"ORDER BY d.product_id LIMIT {LIST_COUNT};\n"
        )
        return Mix(kind, paths, {"page": script})
    if kind in ("storefront", "cold", "t2micro", "compress"):
        # A storefront page asks for a product, its styles and its related list.
        paths = [f"/products/{product}{s}" for product in zipf_ids(products, sample, rng)
                 for s in suffixes]
        scripts = {
            name: (
                f"\\set rank random_zipfian(1, {products}, {ZIPF_S})\n"
                f"\\set id permute(:rank - 1, {products}) + 1\n{query}\n"
            )
            for name, query in PRODUCT_QUERIES.items()
        }
        return Mix(kind, paths, scripts)
    raise ValueError(kind)


def export_documents(mix, url):
    """Reads the documents behind the mix's paths, as the service would send them."""
    ids = sorted({int(m.group(1)) for p in mix.paths if (m := re.match(r"/products/(\d+)", p))})
    if ids:
        rows = psql(
            url,
            "SELECT product_id, product::text, styles::text, related::text FROM document "
            f"WHERE product_id = ANY('{{{','.join(map(str, ids))}}}'::int[]);",
        )
        for line in rows.splitlines():
            product_id, product, styles, related = line.split("\x1f")
            mix.documents[f"/products/{product_id}"] = product.encode()
            mix.documents[f"/products/{product_id}/styles"] = styles.encode()
            mix.documents[f"/products/{product_id}/related"] = related.encode()
    pages = sorted({int(m.group(1)) for p in mix.paths if (m := re.match(r"/products\?page=(\d+)", p))})
    if pages:
        rows = psql(
            url,
            f"SELECT p.page, '[' || string_agg(d.list_entry::text, ',' ORDER BY d.rank) || ']' "
            f"FROM unnest('{{{','.join(map(str, pages))}}}'::int[]) AS p(page) "
            f"JOIN (SELECT list_entry, row_number() OVER (ORDER BY product_id) AS rank "
            f"FROM document) d ON d.rank BETWEEN (p.page - 1) * {LIST_COUNT} + 1 "
            f"AND p.page * {LIST_COUNT} GROUP BY p.page;",
        )
        for line in rows.splitlines():
            page, body = line.split("\x1f")
            mix.documents[f"/products?page={page}&count={LIST_COUNT}"] = body.encode()


def related_lists(url, ids):
    """The related list of each of `ids` as the document table holds it (what
    `/products/{id}/related` answers), and those of the ids in the lists that name a
    product."""
    rows = psql(url, "SELECT product_id, related::text FROM document "
                     f"WHERE product_id = ANY('{{{','.join(map(str, ids))}}}'::int[]);")
    related = {}
    for line in rows.splitlines():
        product_id, ids_text = line.split("\x1f")
        related[int(product_id)] = json.loads(ids_text)
    listed = sorted({r for rs in related.values() for r in rs})
    rows = psql(url, "SELECT product_id FROM document "
                     f"WHERE product_id = ANY('{{{','.join(map(str, listed))}}}'::int[]);")
    return related, {int(line) for line in rows.splitlines()}


def product_pages(ids, related, named):
    """The product page of each of `ids` asked for two ways, as lists of paths: the
    requests a storefront makes today (the product, its styles and its related list,
    then, in the list's order and repeats included, each related product that exists
    and its styles) and the one request for the whole page."""
    today = [
        [f"/products/{i}", f"/products/{i}/styles", f"/products/{i}/related"]
        + [f"/products/{r}{s}" for r in related[i] if r in named for s in ("", "/styles")]
        for i in ids
    ]
    return today, [[f"/products/{i}/page"] for i in ids]


def write_paths(paths, directory, name="paths.txt"):
    """A URL list for the drivers, one path a line; its file name."""
    paths_file = os.path.join(directory, name)
    with open(paths_file, "w") as f:
        f.write("\n".join(paths) + "\n")
    return paths_file


def write_files(mix, directory):
    """The URL list for the drivers, and the documents as an nginx document root."""
    os.makedirs(directory, exist_ok=True)
    docroot = os.path.join(directory, "docroot")
    shutil.rmtree(docroot, ignore_errors=True)
    for path, body in mix.documents.items():
        if path.startswith("/products?"):
            page = re.search(r"page=(\d+)", path).group(1)
            target = os.path.join(docroot, "list", f"{page}-{LIST_COUNT}.json")
        else:
            target = os.path.join(docroot, path.lstrip("/"), "body.json")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(body)
    write_paths(mix.paths, directory)
    for name, script in {**mix.pgbench_scripts, **mix.form_scripts}.items():
        with open(os.path.join(directory, f"pgbench-{name}.sql"), "w") as f:
            f.write(script)
    return docroot


def every_document(products, seed, directory):
    """A file listing every document of the catalog once, in a random order; its name
    and the number of documents."""
    paths = [f"/products/{i}{s}" for i in range(1, products + 1)
             for s in ("", "/styles", "/related")]
    random.Random(seed).shuffle(paths)
    return write_paths(paths, directory, "every-document.txt"), len(paths)
