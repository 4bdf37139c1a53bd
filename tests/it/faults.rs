//! Data faults: truncated, garbled, mis-headed, missing and randomly damaged files, a
//! full disk, and `load` or `materialize` killed half-way. Each gives a clear error or
//! reported rejects, and the catalog a server is serving stays exactly as it was.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use atelier::catalog::FILE_NAMES;
use atelier::catalog::Variant;
use atelier::generate::Spec;
use atelier::http::Settings;
use atelier::load;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tempfile::TempDir;
use tokio_postgres::Client;

use crate::serving::{Server, eventually};
use crate::support::{TestDb, read_report, sample};

/// Paths whose answers stand for "what is served".
const SERVED_PATHS: [&str; 6] = [
    "/products/1",
    "/products/1/styles",
    "/products/5/related",
    "/products/3",
    "/products?page=1&count=20",
    "/products?page=2&count=3",
];

/// Writes a generated catalog of `products` products into `dir/name`.
fn generate(dir: &Path, name: &str, products: u32, clean: bool) -> PathBuf {
    let args = Spec {
        products,
        seed: 11,
        out: dir.join(name),
        clean,
        variant: Variant::Compact,
    };
    atelier::generate::generate(&args, false).expect("generate a catalog");
    args.out
}

/// A copy of the catalog in `from`, in a new temporary directory.
fn copy_catalog(from: &Path) -> TempDir {
    let dir = TempDir::new().unwrap();
    for file in FILE_NAMES {
        std::fs::copy(from.join(file), dir.path().join(file)).unwrap();
    }
    dir
}

/// The status and body of every path in [`SERVED_PATHS`].
async fn served(server: &Server) -> Vec<(u16, Vec<u8>)> {
    let mut answers = Vec::new();
    for path in SERVED_PATHS {
        let reply = server.get(path).await;
        answers.push((reply.status, reply.body));
    }
    answers
}

/// A digest of every catalog table, the documents and the run log.
async fn digest(client: &Client) -> Vec<String> {
    let mut digests = Vec::new();
    for table in [
        "product",
        "style",
        "feature",
        "photo",
        "sku",
        "related",
        "document",
        "catalog_run",
    ] {
        let key = if table == "document" {
            "product_id"
        } else {
            "id"
        };
        let sql = format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY {key})), '') \
             FROM {table} t"
        );
        digests.push(client.query_one(&sql, &[]).await.unwrap().get(0));
    }
    digests
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn bad_files_give_clear_errors_or_reported_rejects_and_the_served_catalog_stays() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let server = Server::start_listening(&db.url, Settings::default()).await;
    let before = served(&server).await;
    assert_eq!(before[0].0, 200);
    let client = db.client().await;
    let documents = "SELECT count(*) FROM document";
    let document_count = count(&client, documents).await;

    let good = TempDir::new().unwrap();
    let good = generate(good.path(), "good", 300, true);
    let garbage: Vec<u8> = {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        (0..4096).map(|_| rng.next_u32() as u8).collect()
    };
    type Fault = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Fault, Option<&str>)> = vec![
        (
            "product.csv cut off inside a header",
            Box::new(|dir| truncate(&dir.join("product.csv"), 12)),
            Some("product.csv"),
        ),
        (
            "skus.csv empty",
            Box::new(|dir| truncate(&dir.join("skus.csv"), 0)),
            Some("skus.csv: the file is empty"),
        ),
        (
            "photos.csv is binary",
            Box::new({
                let garbage = garbage.clone();
                move |dir| std::fs::write(dir.join("photos.csv"), &garbage).unwrap()
            }),
            Some("photos.csv"),
        ),
        (
            "styles.csv has another file's header",
            Box::new(|dir| {
                std::fs::copy(dir.join("skus.csv"), dir.join("styles.csv")).unwrap();
            }),
            Some("styles.csv"),
        ),
        (
            "related.csv is missing",
            Box::new(|dir| std::fs::remove_file(dir.join("related.csv")).unwrap()),
            Some("related.csv"),
        ),
        (
            "features.csv cut off in the middle of a record",
            Box::new(|dir| {
                let path = dir.join("features.csv");
                let text = std::fs::read(&path).unwrap();
                // Inside the quoted feature name of a record half-way through the file.
                let middle = text.len() / 2;
                let line = middle + memchr_newline(&text[middle..]) + 1;
                truncate(&path, (line + 8) as u64);
            }),
            None,
        ),
        (
            "skus.csv has binary garbage in the middle",
            Box::new({
                let garbage = garbage.clone();
                move |dir| {
                    let path = dir.join("skus.csv");
                    let mut text = std::fs::read(&path).unwrap();
                    let middle = text.len() / 2;
                    text.splice(middle..middle, garbage.iter().copied());
                    std::fs::write(&path, text).unwrap();
                }
            }),
            None,
        ),
    ];
    for (what, fault, error) in cases {
        let dir = copy_catalog(&good);
        fault(dir.path());
        let out = TempDir::new().unwrap();
        let rejects = out.path().join("rejects.csv");
        let mut loader = db.client().await;
        let outcome = load::load_catalog(&mut loader, dir.path(), &rejects, false).await;
        match error {
            Some(message) => {
                let error = outcome.expect_err(what).to_string();
                assert!(error.contains(message), "{what}: {error}");
                assert!(!rejects.exists(), "{what}");
            }
            None => {
                let report = outcome.unwrap_or_else(|e| panic!("{what}: {e}"));
                let reported = read_report(&rejects);
                let rejected: u64 = report.files.iter().map(|c| c.rejected).sum();
                assert!(rejected > 0, "{what}: nothing rejected");
                for counts in &report.files {
                    assert_eq!(counts.read, counts.loaded + counts.rejected, "{what}");
                    let lines = reported.iter().filter(|r| r.file == counts.file).count();
                    assert_eq!(lines as u64, counts.repaired + counts.rejected, "{what}");
                }
                assert!(reported.iter().all(|r| !r.reason.is_empty()), "{what}");
            }
        }
        // A load never changes what is served.
        assert_eq!(served(&server).await, before, "{what}");
        assert_eq!(count(&client, documents).await, document_count, "{what}");
    }
    let staging = "SELECT count(*) FROM pg_namespace WHERE nspname = 'atelier_load'";
    assert_eq!(count(&client, staging).await, 0);
    server.stop().await;
}

fn truncate(path: &Path, length: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(length)
        .unwrap();
}

fn memchr_newline(bytes: &[u8]) -> usize {
    bytes.iter().position(|&b| b == b'\n').unwrap()
}

/// A uniform integer in `0..n`.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

/// How one line of a clean catalog is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Cut off before its last field separator.
    Truncated,
    /// A byte that is never valid UTF-8 put somewhere in it.
    InvalidUtf8,
    /// A NUL byte put somewhere in it.
    Nul,
    /// One field too many.
    ExtraField,
    /// Junk before its id.
    JunkId,
}

/// Damages `line` in a way that no valid row results.
fn damage(line: &[u8], how: Damage, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = line.to_vec();
    match how {
        Damage::Truncated => {
            let last_comma = line.iter().rposition(|&b| b == b',').unwrap();
            out.truncate(1 + below(rng, last_comma));
        }
        Damage::InvalidUtf8 => out.insert(below(rng, line.len() + 1), 0xff),
        Damage::Nul => out.insert(below(rng, line.len() + 1), 0),
        Damage::ExtraField => out.extend_from_slice(b",\"junk\""),
        Damage::JunkId => {
            out.splice(0..0, *b"id#");
        }
    }
    out
}

#[tokio::test]
async fn one_percent_of_rows_damaged_are_each_rejected_or_repaired_and_reported() {
    let tmp = TempDir::new().unwrap();
    let clean = generate(tmp.path(), "clean", 2000, true);
    let damaged_dir = tmp.path().join("damaged");
    std::fs::create_dir_all(&damaged_dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let modes = [
        Damage::Truncated,
        Damage::InvalidUtf8,
        Damage::Nul,
        Damage::ExtraField,
        Damage::JunkId,
    ];
    // (file, physical line) of every damaged record; data lines start at line 2.
    let mut damaged: Vec<(&str, u64)> = Vec::new();
    let mut data_lines = std::collections::HashMap::new();
    for file in FILE_NAMES {
        let text = std::fs::read(clean.join(file)).unwrap();
        let lines: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut out = Vec::with_capacity(text.len());
        for (index, line) in lines.iter().enumerate() {
            if index > 0 && below(&mut rng, 100) == 0 {
                let how = modes[below(&mut rng, modes.len())];
                out.extend_from_slice(&damage(line, how, &mut rng));
                damaged.push((file, index as u64 + 1));
            } else {
                out.extend_from_slice(line);
            }
            out.push(b'\n');
        }
        data_lines.insert(file, lines.len() as u64 - 1);
        std::fs::write(damaged_dir.join(file), out).unwrap();
    }
    assert!(damaged.len() > 100, "{} lines damaged", damaged.len());

    let db = TestDb::new().await;
    let mut client = db.client().await;
    let rejects = tmp.path().join("rejects.csv");
    let report = load::load_catalog(&mut client, &damaged_dir, &rejects, false)
        .await
        .expect("a damaged catalog loads");
    let reported = read_report(&rejects);
    for &(file, line) in &damaged {
        let entry = reported
            .iter()
            .find(|r| r.file == file && r.line == line)
            .unwrap_or_else(|| panic!("damaged {file} line {line} is not in the report"));
        assert!(
            matches!(entry.outcome.as_str(), "rejected" | "repaired") && !entry.reason.is_empty(),
            "{entry:?}"
        );
    }
    // Whatever else is reported is an orphan of a rejected parent: nothing more was lost.
    for entry in &reported {
        if !damaged.contains(&(entry.file.as_str(), entry.line)) {
            assert!(
                entry.outcome == "rejected" && entry.reason.contains("names no loaded"),
                "{entry:?}"
            );
        }
    }
    // Counts add up: every line was read, and loaded unless it was rejected.
    for (file, table) in FILE_NAMES
        .iter()
        .zip(["product", "style", "feature", "photo", "sku", "related"])
    {
        let counts = report.file(file).unwrap();
        assert_eq!(counts.read, data_lines[file], "{file}");
        assert_eq!(counts.read, counts.loaded + counts.rejected, "{file}");
        let lines = reported.iter().filter(|r| r.file == *file).count() as u64;
        assert_eq!(lines, counts.repaired + counts.rejected, "{file}");
        let rows = count(&client, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(rows as u64, counts.loaded, "{file}");
    }
}

/// A PostgreSQL tablespace or a rejects report on a small tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// A tmpfs of `bytes` owned by `owner` (uid:gid), or `None` where mounting is not
    /// permitted (unprivileged containers).
    fn mount(bytes: u64, owner: Option<(u32, u32)>) -> Option<SmallDisk> {
        let dir = TempDir::new().unwrap();
        let mut options = format!("size={bytes}");
        if let Some((uid, gid)) = owner {
            options.push_str(&format!(",uid={uid},gid={gid},mode=0700"));
        }
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// The uid and gid that own the test cluster's files (the server's OS user).
fn cluster_owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(crate::support::cluster().pgdata()).unwrap();
    (meta.uid(), meta.gid())
}

#[tokio::test]
async fn a_full_disk_stops_the_load_with_a_clear_error_and_changes_nothing() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let client = db.client().await;
    let before = digest(&client).await;
    let tmp = TempDir::new().unwrap();
    let dirty = generate(tmp.path(), "dirty", 3000, false);

    // The rejects report's disk fills up.
    let Some(disk) = SmallDisk::mount(16 * 1024, None) else {
        eprintln!("SKIPPED: mount -t tmpfs is not permitted here");
        return;
    };
    let rejects = disk.path().join("rejects.csv");
    let mut loader = db.client().await;
    let error = load::load_catalog(&mut loader, &dirty, &rejects, false)
        .await
        .expect_err("the rejects report does not fit")
        .to_string();
    assert!(error.contains("No space left on device"), "{error}");
    assert!(error.contains(disk.path().to_str().unwrap()), "{error}");
    assert_eq!(digest(&client).await, before);
    let left: Vec<_> = std::fs::read_dir(disk.path()).unwrap().collect();
    assert!(left.is_empty(), "report parts left behind: {left:?}");
    drop(disk);

    // The database's disk fills up: the new tables are built on a tablespace that is
    // too small for them.
    let disk = SmallDisk::mount(512 * 1024, Some(cluster_owner())).expect("mounted before");
    let tablespace = format!("small_{}", std::process::id());
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "CREATE TABLESPACE {tablespace} LOCATION '{}'",
            disk.path().display()
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "ALTER DATABASE {database} SET default_tablespace = {tablespace}"
        ))
        .await
        .unwrap();
    let mut loader = db.client().await;
    let rejects = tmp.path().join("rejects.csv");
    let error = load::load_catalog(&mut loader, &dirty, &rejects, false)
        .await
        .expect_err("the catalog does not fit in the tablespace")
        .to_string();
    assert!(
        error.contains("database") && error.contains("No space left on device"),
        "{error}"
    );
    assert_eq!(digest(&client).await, before);
    drop(loader);
    client
        .batch_execute(&format!(
            "ALTER DATABASE {database} RESET default_tablespace"
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!("DROP TABLESPACE {tablespace}"))
        .await
        .unwrap();
    drop(disk);
    // With room again, the same files load.
    let mut loader = db.client().await;
    load::load_catalog(&mut loader, &dirty, &rejects, false)
        .await
        .expect("the load succeeds with room on disk");
    assert_eq!(count(&client, "SELECT count(*) FROM product").await, 3000);
}

/// An `atelier` process, killed when dropped.
fn atelier(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
    command
        .args(args)
        .env("ATELIER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `atelier args` to completion and expects success.
async fn run_to_completion(args: &[&str]) {
    let output = tokio::time::timeout(Duration::from_secs(300), atelier(args).output())
        .await
        .expect("finishes within 5 minutes")
        .unwrap();
    assert!(
        output.status.success(),
        "atelier {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts `atelier args`, waits until one of its statements matching `pattern` runs in
/// the database, and kills it with SIGKILL there.
async fn kill_half_way(client: &Client, args: &[&str], pattern: &str) {
    const ACTIVE_SQL: &str = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'active' AND query LIKE $1";
    let mut child = atelier(args).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let active: i64 = client
            .query_one(ACTIVE_SQL, &[&pattern])
            .await
            .unwrap()
            .get(0);
        if active > 0 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("atelier {args:?} ended ({status}) before {pattern:?} was seen");
        }
        assert!(Instant::now() < deadline, "{pattern:?} never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

#[tokio::test]
async fn load_or_materialize_killed_half_way_leaves_the_previous_catalog_served() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let server = Server::start_listening(&db.url, Settings::default()).await;
    let before = served(&server).await;
    let client = db.client().await;
    let digest_before = digest(&client).await;
    let tmp = TempDir::new().unwrap();
    let products = 20_000;
    let big = generate(tmp.path(), "big", products, false);
    let rejects = tmp.path().join("rejects.csv");
    let load_args = [
        "load",
        big.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
        "--database-url",
        &db.url,
    ];

    kill_half_way(&client, &load_args, "COPY atelier_load.%").await;
    assert_eq!(digest(&client).await, digest_before);
    assert_eq!(served(&server).await, before);
    run_to_completion(&load_args).await;
    let loaded = count(&client, "SELECT count(*) FROM product").await;
    assert_eq!(loaded, i64::from(products));
    let staging = "SELECT count(*) FROM pg_namespace WHERE nspname = 'atelier_load'";
    assert_eq!(count(&client, staging).await, 0);
    // The load changed the tables, not what is served.
    assert_eq!(served(&server).await, before);

    let documents_before = digest(&client).await[6].clone();
    let runs = "SELECT count(*) FROM catalog_run";
    let runs_before = count(&client, runs).await;
    let materialize_args = ["materialize", "--jobs", "2", "--database-url", &db.url];
    // pg_stat_activity shows the start of a statement: a part's begins with its sources.
    kill_half_way(&client, &materialize_args, "WITH%product_src AS%").await;
    assert_eq!(digest(&client).await[6], documents_before);
    assert_eq!(count(&client, runs).await, runs_before);
    assert_eq!(served(&server).await, before);
    assert_eq!(server.get("/products/15000").await.status, 404);

    run_to_completion(&materialize_args).await;
    let documents = count(&client, "SELECT count(*) FROM document").await;
    assert_eq!(documents, i64::from(products));
    let leftover = "SELECT count(*) FROM pg_tables WHERE tablename = 'document_next'";
    assert_eq!(count(&client, leftover).await, 0);
    eventually(10, "the new catalog is served", || async {
        server.get("/products/15000").await.status == 200
    })
    .await;
    server.stop().await;
}
