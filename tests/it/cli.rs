//! Tests of the `atelier` command itself, run as a process: its log output on a pipe,
//! text or JSON; results on standard output and logs on standard error; what generate,
//! load, materialize, serve and db say about bad input before any work; `db status`'s
//! exit status; the rejects report's place; the `./materialize` script; and how serve
//! starts, stops and reports a lost LISTEN connection.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStderr};

use crate::serving::{eventually, read_reply, request, send};
use crate::support::{
    OwnCluster, TestDb, free_port, read_report, sample, terminate_listen_connections,
};

/// How long a process may take to say something or to end.
const PATIENCE: Duration = Duration::from_secs(60);

/// `atelier args` with the default log filter and format, and nothing inherited that
/// would change its output.
fn atelier(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
    command
        .args(args)
        .env_remove("ATELIER_LOG")
        .env_remove("ATELIER_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env_remove("DATABASE_URL")
        .env_remove("ATELIER_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end.
async fn output(mut command: tokio::process::Command) -> Output {
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("the command ends")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every line of `log` parsed as a JSON object with a level and a message.
fn json_lines(log: &[u8]) -> Vec<Value> {
    let lines: Vec<Value> = text(log)
        .lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            assert!(value.is_object(), "{line}");
            assert!(value["level"].is_string(), "no level: {line}");
            assert!(value["fields"]["message"].is_string(), "no message: {line}");
            value
        })
        .collect();
    assert!(!lines.is_empty(), "nothing was logged");
    lines
}

/// A running `atelier serve` on a port of its own, its standard error a pipe.
struct ServeProcess {
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// Everything read from standard error so far.
    log: Vec<u8>,
    addr: SocketAddr,
}

impl ServeProcess {
    /// Starts serving `url` and waits until it listens.
    async fn start(url: &str, envs: &[(&str, &str)]) -> ServeProcess {
        ServeProcess::start_with(&["--listen", "127.0.0.1:0", "--database-url", url], envs).await
    }

    /// Starts `atelier serve args` and waits until it listens on 127.0.0.1.
    async fn start_with(args: &[&str], envs: &[(&str, &str)]) -> ServeProcess {
        let mut command = atelier(&[&["serve"], args].concat());
        command.envs(envs.iter().copied());
        let mut child = command.spawn().unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut server = ServeProcess {
            child,
            stderr,
            log: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = server.line_containing("serving the products API").await;
        let at = line.find("127.0.0.1:").expect("the address is logged");
        let addr: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        server.addr = addr.parse().unwrap();
        server
    }

    /// Reads standard error up to the first new line containing `pattern`.
    async fn line_containing(&mut self, pattern: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut line = Vec::new();
            let read =
                tokio::time::timeout_at(deadline.into(), self.stderr.read_until(b'\n', &mut line))
                    .await
                    .unwrap_or_else(|_| panic!("no {pattern:?} in\n{}", text(&self.log)))
                    .unwrap();
            assert!(read > 0, "no {pattern:?} in\n{}", text(&self.log));
            self.log.extend_from_slice(&line);
            let line = text(&line);
            if line.contains(pattern) {
                return line;
            }
        }
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let pid = self.child.id().expect("still running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits for a clean exit after `terminate` and returns all it logged.
    async fn finish(mut self) -> Vec<u8> {
        tokio::time::timeout(PATIENCE, self.stderr.read_to_end(&mut self.log))
            .await
            .expect("standard error closes")
            .unwrap();
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("serve exits")
            .unwrap();
        assert!(status.success(), "{status}\n{}", text(&self.log));
        self.log
    }

    /// Whether the server is listening for invalidations (`/metrics`).
    async fn listening(&self) -> bool {
        request(self.addr, "GET", "/metrics", &[])
            .await
            .text()
            .lines()
            .any(|line| line == "atelier_notify_listening 1")
    }
}

#[tokio::test]
async fn serve_writes_no_colour_escapes_to_a_pipe() {
    let db = TestDb::new().await;
    let server = ServeProcess::start(&db.url, &[]).await;
    server.terminate();
    let log = server.finish().await;
    assert!(!log.contains(&0x1b), "escape bytes in\n{}", text(&log));
    let log = text(&log);
    assert!(log.contains(" INFO "), "{log}");
    assert!(
        log.lines().last().unwrap().contains("server stopped"),
        "{log}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_and_count_the_drained_requests() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let mut server = ServeProcess::start(&db.url, &[("ATELIER_LOG_FORMAT", "json")]).await;
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE document IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut busy = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    send(&mut busy, "GET", "/products/2", &[], true).await;
    let waiting = "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'atelier serve' AND wait_event_type = 'Lock'";
    eventually(10, "the request waits on the lock", || async {
        db.client()
            .await
            .query_one(waiting, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            >= 1
    })
    .await;
    server.terminate();
    server.line_containing("shutting down").await;
    lock.rollback().await.unwrap();
    assert_eq!(read_reply(&mut busy, false).await.status, 200);
    let lines = json_lines(&server.finish().await);
    let shutting_down = lines
        .iter()
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("shutting down")
        })
        .unwrap();
    assert_eq!(shutting_down["fields"]["in_flight"], 1);
    let stopped = lines.last().unwrap();
    assert_eq!(stopped["fields"]["message"], "server stopped");
    assert_eq!(stopped["fields"]["drained"], 1);
    assert_eq!(stopped["level"], "INFO");
}

#[tokio::test]
async fn a_failure_in_json_mode_is_the_last_json_line() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("nothing-here");
    let output = output(atelier(&[
        "load",
        missing.to_str().unwrap(),
        "--log-format",
        "json",
    ]))
    .await;
    assert!(!output.status.success());
    let lines = json_lines(&output.stderr);
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    assert_eq!(
        last["fields"]["message"],
        format!("catalog directory {} does not exist", missing.display())
    );
}

#[tokio::test]
async fn load_of_a_missing_directory_says_so_before_starting_a_cluster() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("does-not-exist");
    let cluster = tmp.path().join("pg");
    let output = output(atelier(&[
        "load",
        missing.to_str().unwrap(),
        "--data-dir",
        cluster.to_str().unwrap(),
    ]))
    .await;
    assert!(!output.status.success());
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: catalog directory {} does not exist\n",
            missing.display()
        )
    );
    assert!(!cluster.exists(), "a cluster was created");
}

#[tokio::test]
async fn load_names_every_missing_file_at_once_before_starting_a_cluster() {
    let tmp = TempDir::new().unwrap();
    let catalog = tmp.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    for file in ["product.csv", "styles.csv", "features.csv"] {
        std::fs::copy(sample("sara-2023").join(file), catalog.join(file)).unwrap();
    }
    let cluster = tmp.path().join("pg");
    let output = output(atelier(&[
        "load",
        catalog.to_str().unwrap(),
        "--data-dir",
        cluster.to_str().unwrap(),
    ]))
    .await;
    assert!(!output.status.success());
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: catalog directory {} lacks 3 of the 6 catalog files: \
             photos.csv, skus.csv, related.csv\n",
            catalog.display()
        )
    );
    assert!(!cluster.exists(), "a cluster was created");
}

#[tokio::test]
async fn load_writes_the_rejects_report_beside_the_files_and_prints_its_absolute_path() {
    let db = TestDb::new().await;
    let tmp = TempDir::new().unwrap();
    let catalog = tmp.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    for file in atelier::catalog::FILE_NAMES {
        std::fs::copy(sample("sara-2023").join(file), catalog.join(file)).unwrap();
    }
    let mut command = atelier(&["load", "catalog", "--database-url", &db.url]);
    command.current_dir(tmp.path());
    let output = output(command).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = catalog.canonicalize().unwrap().join("rejects.csv");
    let stdout = text(&output.stdout);
    assert!(
        stdout.ends_with(&format!("rejects report: {}\n", report.display())),
        "{stdout}"
    );
    // read_report checks the header.
    read_report(&report);
    assert!(!tmp.path().join(".atelier").exists());

    let help = output_of_help(&["load"]).await;
    assert!(
        help.contains("file, line, outcome (rejected or repaired), reason, raw"),
        "{help}"
    );
    assert!(help.contains("Default: rejects.csv in DIR"), "{help}");
}

/// `atelier <command> --help`.
async fn output_of_help(command: &[&str]) -> String {
    let mut args = command.to_vec();
    args.push("--help");
    let output = output(atelier(&args)).await;
    assert!(output.status.success());
    // Help wraps its lines at the terminal's width; one line per paragraph compares.
    text(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn load_refuses_a_report_it_cannot_write_before_reading_the_files() {
    let db = TestDb::new().await;
    let tmp = TempDir::new().unwrap();
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let report = blocker.join("rejects.csv");
    let output = output(atelier(&[
        "load",
        sample("sara-2023").to_str().unwrap(),
        "--rejects",
        report.to_str().unwrap(),
        "--database-url",
        &db.url,
    ]))
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot write the rejects report {} (--rejects PATH puts it elsewhere): ",
            report.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn materialize_names_unknown_ids_and_fails_when_all_are_unknown() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let output_for = |products: &str| {
        output(atelier(&[
            "materialize",
            "--products",
            products,
            "--database-url",
            &db.url,
        ]))
    };
    let none = output_for("99999999").await;
    assert!(!none.status.success());
    assert_eq!(
        text(&none.stderr),
        "error: product 99999999 is not in the catalog; nothing was materialized\n"
    );
    assert_eq!(text(&none.stdout), "");

    let some = output_for("1,99999999,99999998").await;
    assert!(some.status.success(), "{}", text(&some.stderr));
    let stderr = text(&some.stderr);
    assert!(
        stderr.contains(
            "WARN atelier::materialize: products 99999998, 99999999 are not in the catalog; \
             materialized the others"
        ),
        "{stderr}"
    );
    assert!(
        text(&some.stdout).starts_with("materialized 1 documents (0 removed) in "),
        "{}",
        text(&some.stdout)
    );

    let zero = output_for("0").await;
    assert!(!zero.status.success());
    assert!(text(&zero.stderr).contains("invalid value '0'"));
}

#[tokio::test]
async fn db_status_and_stop_neither_create_nor_start_a_cluster() {
    let tmp = TempDir::new().unwrap();
    let nowhere = tmp.path().join("nowhere");
    let dir = nowhere.to_str().unwrap();
    let status = output(atelier(&["db", "status", "--data-dir", dir])).await;
    assert_eq!(
        status.status.code(),
        Some(4),
        "no cluster: pg_ctl status's 4"
    );
    assert_eq!(
        text(&status.stdout),
        format!("no embedded cluster in {dir} (load, materialize or serve creates it)\n")
    );
    let stop = output(atelier(&["db", "stop", "--data-dir", dir])).await;
    assert!(stop.status.success());
    assert_eq!(
        text(&stop.stdout),
        format!("no embedded cluster in {dir}\n")
    );
    assert!(!nowhere.exists());

    // A stopped cluster is reported as such and stays stopped.
    let own = OwnCluster::new();
    own.cluster
        .ensure_running(atelier::db::embedded::Durability::Throwaway)
        .unwrap();
    own.cluster.stop().unwrap();
    let dir = own.dir.path().to_str().unwrap();
    let status = output(atelier(&["db", "status", "--data-dir", dir])).await;
    assert!(
        text(&status.stdout).starts_with("stopped: "),
        "{}",
        text(&status.stdout)
    );
    assert_eq!(status.status.code(), Some(3), "stopped: pg_ctl status's 3");
    assert!(!own.cluster.is_running());
    let stop = output(atelier(&["db", "stop", "--data-dir", dir])).await;
    assert_eq!(text(&stop.stdout), "not running\n");

    let help = output_of_help(&["db", "status"]).await;
    assert!(help.contains("it is neither created nor started"), "{help}");
    assert!(!help.contains("started if needed"), "{help}");
    assert!(
        help.contains("Exits with status 0 when it runs (or DATABASE_URL is set), 3 when it is stopped and 4 when there is none"),
        "{help}"
    );
}

#[tokio::test]
async fn db_status_exits_zero_while_the_cluster_runs() {
    let own = OwnCluster::new();
    own.cluster
        .ensure_running(atelier::db::embedded::Durability::Throwaway)
        .unwrap();
    let dir = own.dir.path().to_str().unwrap();
    let status = output(atelier(&["db", "status", "--data-dir", dir])).await;
    own.cluster.stop().unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stdout).starts_with("running: postgres://"),
        "{}",
        text(&status.stdout)
    );
    let external = output(atelier(&[
        "db",
        "status",
        "--database-url",
        "postgres://nobody@localhost/none",
    ]))
    .await;
    assert!(external.status.success());
    assert!(text(&external.stdout).starts_with("using DATABASE_URL"));
}

#[tokio::test]
async fn generate_prints_its_summary_on_standard_output() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("catalog");
    let output = output(atelier(&[
        "generate",
        "--products",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]))
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(&format!("generated 20 products into {} in ", out.display())),
        "{stdout}"
    );
    for file in atelier::catalog::FILE_NAMES {
        assert!(stdout.contains(&format!("  {file}")), "{file} in {stdout}");
    }
    assert!(
        !text(&output.stderr).contains("generated"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn generate_says_the_number_of_products_must_be_positive() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("catalog");
    for count in ["-5", "0"] {
        let output = output(atelier(&[
            "generate",
            "--products",
            count,
            "--out",
            out.to_str().unwrap(),
        ]))
        .await;
        assert_eq!(output.status.code(), Some(2), "a usage error");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "invalid value '{count}' for '--products <PRODUCTS>': the number must be \
                 positive (1 or more), got {count}"
            )),
            "{stderr}"
        );
        assert!(!out.exists());
    }
}

/// A copy of the sara-2023 sample with styles.csv's header replaced by `header`.
fn catalog_with_styles_header(tmp: &TempDir, header: &str) -> std::path::PathBuf {
    let catalog = tmp.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    for file in atelier::catalog::FILE_NAMES {
        std::fs::copy(sample("sara-2023").join(file), catalog.join(file)).unwrap();
    }
    let styles = std::fs::read_to_string(catalog.join("styles.csv")).unwrap();
    let (_, rows) = styles.split_once('\n').unwrap();
    std::fs::write(catalog.join("styles.csv"), format!("{header}\n{rows}")).unwrap();
    catalog
}

#[tokio::test]
async fn a_broken_header_names_both_forms_before_starting_a_cluster() {
    let tmp = TempDir::new().unwrap();
    let catalog = catalog_with_styles_header(&tmp, "id,productId,name,price");
    let cluster = tmp.path().join("pg");
    let expected = format!(
        "error: {}: not a catalog styles.csv: its first line \"id,productId,name,price\" is \
         neither header it may have, \
         `id,productId,name,sale_price,original_price,default_style` (compact) or \
         `id, product_id, name, sale_price, original_price, default_style` (spaced)\n",
        catalog.join("styles.csv").display()
    );
    for changes in [false, true] {
        let mut args = vec![
            "load",
            catalog.to_str().unwrap(),
            "--data-dir",
            cluster.to_str().unwrap(),
        ];
        if changes {
            args.push("--changes");
        }
        let output = output(atelier(&args)).await;
        assert!(!output.status.success());
        assert_eq!(text(&output.stderr), expected, "--changes: {changes}");
        assert!(
            !cluster.exists(),
            "a cluster was created (--changes: {changes})"
        );
    }
}

#[tokio::test]
async fn log_format_is_listed_once_in_the_top_level_help_and_taken_anywhere() {
    let top = output_of_help(&[]).await;
    assert!(top.contains("--log-format <LOG_FORMAT>"), "{top}");
    assert!(top.contains("Accepted after any command too"), "{top}");
    for command in [
        &["generate"][..],
        &["load"],
        &["materialize"],
        &["serve"],
        &["db", "status"],
        &["db", "stop"],
    ] {
        let help = output_of_help(command).await;
        assert!(!help.contains("log-format"), "{command:?}: {help}");
    }
    // Before or after the command, it is taken.
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("none");
    for args in [
        vec![
            "--log-format",
            "json",
            "db",
            "stop",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        vec![
            "db",
            "stop",
            "--data-dir",
            dir.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    ] {
        let output = output(atelier(&args)).await;
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    let failed = output(atelier(&["db", "stop", "--log-format", "xml"])).await;
    assert_eq!(failed.status.code(), Some(2));
}

#[tokio::test]
async fn serve_listens_on_the_loopback_interface_given_a_port_alone() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    for form in ["", ":"] {
        let port = free_port();
        let listen = format!("{form}{port}");
        let server =
            ServeProcess::start_with(&["--listen", &listen, "--database-url", &db.url], &[]).await;
        assert_eq!(
            server.addr,
            SocketAddr::from(([127, 0, 0, 1], port)),
            "{listen}"
        );
        assert_eq!(
            request(server.addr, "GET", "/products/1", &[]).await.status,
            200
        );
        server.terminate();
        server.finish().await;
    }
    let help = output_of_help(&["serve"]).await;
    assert!(
        help.contains("or a port alone (3000 or :3000), which listens on 127.0.0.1 only"),
        "{help}"
    );
}

#[tokio::test]
async fn serve_explains_a_bad_address_and_points_port_to_listen() {
    let bad = output(atelier(&["serve", "--listen", "localhost:3000"])).await;
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains(
            "invalid value 'localhost:3000' for '--listen <LISTEN>': expected IP:PORT or a \
             port alone, e.g. 127.0.0.1:3000, 0.0.0.0:3000"
        ),
        "{stderr}"
    );
    let too_big = output(atelier(&["serve", "--listen", "70000"])).await;
    assert!(
        text(&too_big.stderr).contains("the port must be at most 65535, got 70000"),
        "{}",
        text(&too_big.stderr)
    );
    for args in [&["serve", "--port", "3001"][..], &["serve", "--port=3001"]] {
        let port = output(atelier(args)).await;
        assert_eq!(port.status.code(), Some(2));
        let stderr = text(&port.stderr);
        assert!(
            stderr.contains("there is no --port option: use --listen 3001 (127.0.0.1:3001)"),
            "{stderr}"
        );
    }
    let bare = output(atelier(&["serve", "--port"])).await;
    assert!(
        text(&bare.stderr).contains("use --listen PORT"),
        "{}",
        text(&bare.stderr)
    );
    assert!(!output_of_help(&["serve"]).await.contains("--port"));
}

#[tokio::test]
async fn the_materialize_script_runs_this_checkouts_build() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = std::path::Path::new(env!("CARGO_BIN_EXE_atelier"));
    // Another `atelier` first on PATH, which must not be the one run.
    let tmp = TempDir::new().unwrap();
    let impostor = tmp.path().join("atelier");
    std::fs::write(&impostor, "#!/bin/sh\necho impostor\nexit 7\n").unwrap();
    std::fs::set_permissions(
        &impostor,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        tmp.path().display(),
        std::env::var("PATH").unwrap()
    );
    let mut command = tokio::process::Command::new(repo.join("materialize"));
    command
        .arg("--help")
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = output(command).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        text(&output.stdout).contains("Usage: atelier materialize [OPTIONS]"),
        "{}",
        text(&output.stdout)
    );
    let ran = stderr
        .strip_prefix("materialize: running ")
        .expect("it says which binary it runs")
        .trim_end();
    assert!(
        [
            repo.join("target/release/atelier"),
            repo.join("target/debug/atelier")
        ]
        .iter()
        .any(|build| build.as_os_str() == ran),
        "{stderr}"
    );
    // When the tests' build is this checkout's, it is the newer one, so the one run.
    if ours.starts_with(repo.join("target")) {
        let release = repo.join("target/release/atelier");
        let release_newer = std::fs::metadata(&release)
            .and_then(|release| Ok(release.modified()? > std::fs::metadata(ours)?.modified()?))
            .unwrap_or(false);
        if !release_newer {
            assert_eq!(ran, repo.join("target/debug/atelier").to_str().unwrap());
        }
    }
}

#[tokio::test]
async fn a_lost_listen_connection_is_logged_with_its_cause() {
    let db = TestDb::new().await;
    let mut server = ServeProcess::start(&db.url, &[]).await;
    eventually(10, "the server listens", || server.listening()).await;
    let client = db.client().await;
    terminate_listen_connections(&client).await;
    let line = server
        .line_containing("lost the database LISTEN connection")
        .await;
    assert!(
        line.contains("terminating connection due to administrator command (57P01)"),
        "{line}"
    );
    eventually(10, "the server listens again", || server.listening()).await;
    server.terminate();
    server.finish().await;
}

#[tokio::test]
async fn the_embedded_cluster_says_when_it_starts_and_serve_that_it_still_runs() {
    let own = OwnCluster::new();
    let dir = own.dir.path().canonicalize().unwrap();
    let data_dir = dir.to_str().unwrap();
    let started = format!(
        "started the embedded PostgreSQL cluster in {}; it logs to {} and keeps running \
         after this command (`atelier db stop --data-dir {data_dir}` stops it)",
        dir.join("pg").display(),
        dir.join("postgres.log").display()
    );
    let sample = sample("sara-2023");
    let rejects = dir.join("rejects.csv");
    let load = output(atelier(&[
        "load",
        sample.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
        "--data-dir",
        data_dir,
    ]))
    .await;
    assert!(load.status.success(), "{}", text(&load.stderr));
    let stderr = text(&load.stderr);
    assert!(
        stderr.contains(&format!(
            "INFO atelier::db::embedded: created the embedded PostgreSQL cluster in {}",
            dir.join("pg").display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&started), "{stderr}");
    // A running cluster is used without a word.
    let again = output(atelier(&["materialize", "--data-dir", data_dir])).await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        !text(&again.stderr).contains("embedded PostgreSQL"),
        "{}",
        text(&again.stderr)
    );

    own.cluster.stop().unwrap();
    let server =
        ServeProcess::start_with(&["--listen", "127.0.0.1:0", "--data-dir", data_dir], &[]).await;
    assert!(
        text(&server.log).contains(&started),
        "{}",
        text(&server.log)
    );
    assert_eq!(
        request(server.addr, "GET", "/products/1", &[]).await.status,
        200
    );
    assert!(
        text(&server.log).contains("following catalog changes of the embedded database"),
        "{}",
        text(&server.log)
    );
    server.terminate();
    let log = text(&server.finish().await);
    let last = log.lines().last().unwrap();
    assert!(
        last.ends_with(&format!(
            "INFO atelier::http: the embedded PostgreSQL cluster is still running; \
             `atelier db stop --data-dir {data_dir}` stops it"
        )),
        "{log}"
    );
    assert!(own.cluster.is_running());
}

#[tokio::test]
async fn the_access_log_is_one_line_a_request_in_the_log_format_and_off_by_default() {
    let db = TestDb::with_catalog(&sample("sara-2023")).await;
    let url = db.url.as_str();
    let base = ["--listen", "127.0.0.1:0", "--database-url", url];

    let mut text_log =
        ServeProcess::start_with(&[&base[..], &["--access-log"]].concat(), &[]).await;
    let reply = request(text_log.addr, "GET", "/products/1", &[]).await;
    assert_eq!(reply.status, 200);
    let line = text_log.line_containing("atelier::access").await;
    let fields =
        "INFO atelier::access: request method=GET path=/products/1 status=200 duration_us=";
    assert!(line.contains(fields), "{line}");
    assert!(
        line.trim_end()
            .ends_with(&format!(" bytes={}", reply.body.len())),
        "{line}"
    );
    assert_eq!(
        request(text_log.addr, "HEAD", "/nowhere?x=1", &[])
            .await
            .status,
        404
    );
    let line = text_log.line_containing("atelier::access").await;
    assert!(
        line.contains("request method=HEAD path=/nowhere?x=1 status=404 duration_us="),
        "{line}"
    );
    assert!(line.trim_end().ends_with(" bytes=0"), "{line}");
    text_log.terminate();
    text_log.finish().await;

    let mut json_log = ServeProcess::start_with(
        &[&base[..], &["--access-log"]].concat(),
        &[("ATELIER_LOG_FORMAT", "json")],
    )
    .await;
    let long = format!("/products/1?q={}", "a".repeat(17_000));
    assert_eq!(request(json_log.addr, "GET", &long, &[]).await.status, 414);
    let line = json_log.line_containing("atelier::access").await;
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["target"], "atelier::access");
    assert_eq!(entry["level"], "INFO");
    let fields = &entry["fields"];
    assert_eq!(fields["message"], "request");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], format!("{}...", &long[..1024]));
    assert_eq!(fields["status"], 414);
    assert!(fields["duration_us"].as_u64().is_some(), "{line}");
    assert!(fields["bytes"].as_u64().unwrap() > 0, "{line}");
    json_log.terminate();
    json_log.finish().await;

    let quiet = ServeProcess::start(url, &[]).await;
    assert_eq!(
        request(quiet.addr, "GET", "/products/1", &[]).await.status,
        200
    );
    assert_eq!(
        request(quiet.addr, "GET", "/products/2", &[]).await.status,
        200
    );
    quiet.terminate();
    let log = text(&quiet.finish().await);
    assert!(!log.contains("atelier::access"), "{log}");
}
