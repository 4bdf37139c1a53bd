//! Tests of the `atelier` command itself, run as a process: its log output on a pipe,
//! text or JSON; what load, materialize and db say about bad input before any work;
//! the rejects report's place; and how serve stops and reports a lost LISTEN connection.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStderr};

use crate::serving::{eventually, read_reply, request, send};
use crate::support::{OwnCluster, TestDb, read_report, sample};

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
        let mut command = atelier(&["serve", "--listen", "127.0.0.1:0", "--database-url", url]);
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
    assert!(status.status.success());
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
    assert!(!own.cluster.is_running());
    let stop = output(atelier(&["db", "stop", "--data-dir", dir])).await;
    assert_eq!(text(&stop.stdout), "not running\n");

    let help = output_of_help(&["db", "status"]).await;
    assert!(help.contains("it is neither created nor started"), "{help}");
    assert!(!help.contains("started if needed"), "{help}");
}

#[tokio::test]
async fn a_lost_listen_connection_is_logged_with_its_cause() {
    let db = TestDb::new().await;
    let mut server = ServeProcess::start(&db.url, &[]).await;
    eventually(10, "the server listens", || server.listening()).await;
    let client = db.client().await;
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&atelier::http::notify::LISTEN_APPLICATION_NAME],
        )
        .await
        .unwrap();
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
