//! `failover up`: holds a pg_auto_failover formation ([`atelier::db::ha::Formation`]) up
//! until SIGTERM or SIGINT, and takes commands on a Unix socket in its directory, so that
//! other processes (the driver, bench/cluster) can kill its primary and bring the node
//! back. `failover kill-primary`, `rejoin`, `settle` and `status` are the clients.
//!
//! The directory holds:
//! - `pg/`: the formation (the monitor's and the nodes' data directories and logs);
//! - `control.sock`: the command socket;
//! - `formation.json`: the URLs (the multi-host one, each node's, the monitor's) and the
//!   ports, written once the formation is settled and the socket listens.
//!
//! A command is one line; the answer is one JSON object per line, the last one ending the
//! command: `{"event": ...}` lines, or `{"error": "..."}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use atelier::db::ha::{Formation, Node};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;

/// The formation holder's files in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

pub fn description_path(dir: &Path) -> PathBuf {
    dir.join("formation.json")
}

/// What `formation.json` says.
pub struct Description {
    /// Both nodes: writers take the one that accepts writes.
    pub url: String,
    /// Each node alone, by node index.
    pub node_urls: Vec<String>,
}

impl Description {
    pub fn read(dir: &Path) -> Result<Description, String> {
        let path = description_path(dir);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let url = value["url"].as_str().ok_or("no url")?.to_string();
        let node_urls = value["node_urls"]
            .as_array()
            .ok_or("no node_urls")?
            .iter()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        Ok(Description { url, node_urls })
    }
}

/// Three loopback ports nobody listens on right now.
fn free_ports() -> std::io::Result<[u16; 3]> {
    let listeners = [
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
        std::net::TcpListener::bind("127.0.0.1:0")?,
    ];
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// How often the primary is told to checkpoint while a node rejoins.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(3);
/// Times [`Formation::settled`] is waited on, each with its own patience, for a rejoin.
const SETTLE_TRIES: usize = 3;

/// The holder's state shared by the commands.
struct Holder {
    formation: Formation,
    /// Nodes killed and not yet brought back.
    killed: Mutex<Vec<Node>>,
    /// One command that changes the formation at a time.
    busy: Mutex<()>,
}

/// `failover up`: creates the formation in `dir/pg` with database `dbname` and holds it
/// until SIGTERM or SIGINT, when every member is killed.
pub async fn up(dir: &Path, ports: Option<[u16; 3]>, dbname: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let ports = match ports {
        Some(ports) => ports,
        None => free_ports().map_err(|e| format!("no free ports: {e}"))?,
    };
    let started = Instant::now();
    let formation = Formation::create(&dir.join("pg"), ports, dbname)
        .await
        .map_err(|e| format!("cannot create the formation: {e}"))?;
    let created_s = started.elapsed().as_secs_f64();
    let socket = socket_path(dir);
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).map_err(|e| format!("bind {}: {e}", socket.display()))?;
    let description = json!({
        "url": formation.url(dbname),
        "node_urls": [formation.node_url(Node(0), dbname), formation.node_url(Node(1), dbname)],
        "monitor_url": formation.monitor_url(),
        "ports": ports,
        "created_s": created_s,
        "pid": std::process::id(),
    });
    let temporary = dir.join("formation.json.new");
    std::fs::write(
        &temporary,
        serde_json::to_string_pretty(&description).unwrap(),
    )
    .and_then(|()| std::fs::rename(&temporary, description_path(dir)))
    .map_err(|e| format!("write formation.json: {e}"))?;
    eprintln!(
        "failover: formation up in {created_s:.1} s: {}",
        formation.url(dbname)
    );
    let holder = Arc::new(Holder {
        formation,
        killed: Mutex::new(Vec::new()),
        busy: Mutex::new(()),
    });
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let holder = holder.clone();
                    tokio::spawn(async move { serve(&holder, stream).await });
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    holder.formation.stop().await;
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(description_path(dir));
    eprintln!("failover: formation stopped");
    Ok(())
}

/// Answers one command.
async fn serve(holder: &Holder, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let outcome = match line.trim() {
        "status" => status(holder).await,
        "kill-primary" => {
            let _busy = holder.busy.lock().await;
            kill_primary(holder, &mut write).await
        }
        "rejoin" => {
            let _busy = holder.busy.lock().await;
            rejoin(holder).await
        }
        "settle" => {
            let started = Instant::now();
            holder
                .formation
                .settled()
                .await
                .map(|()| json!({"event": "settled", "seconds": started.elapsed().as_secs_f64()}))
                .map_err(|e| e.to_string())
        }
        other => Err(format!("unknown command {other:?}")),
    };
    match outcome {
        Ok(value) => say(&mut write, value).await,
        Err(error) => say(&mut write, json!({ "error": error })).await,
    }
}

/// Writes one answer line.
async fn say(write: &mut OwnedWriteHalf, value: serde_json::Value) {
    let mut text = value.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

async fn status(holder: &Holder) -> Result<serde_json::Value, String> {
    let states = holder.formation.states().await.map_err(|e| e.to_string())?;
    let primary = holder
        .formation
        .primary()
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "event": "status",
        "primary": primary.map(|n| n.0),
        "states": states.iter().map(|(node, reported, assigned)| {
            json!({"node": node.0, "reported": reported, "assigned": assigned})
        }).collect::<Vec<_>>(),
    }))
}

/// Kills the primary's machine, says so at once, then waits until the monitor reports
/// the other node primary: the engine's own failover time.
async fn kill_primary(
    holder: &Holder,
    write: &mut OwnedWriteHalf,
) -> Result<serde_json::Value, String> {
    let old = holder
        .formation
        .primary()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no node is the primary now")?;
    let killed_at = Instant::now();
    holder.formation.kill(old).await;
    holder.killed.lock().await.push(old);
    say(write, json!({"event": "killed", "node": old.0})).await;
    let new = holder
        .formation
        .promoted(old)
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "event": "promoted",
        "node": new.0,
        "engine_failover_s": killed_at.elapsed().as_secs_f64(),
    }))
}

/// Brings every killed node back and waits until one node is the primary and the other
/// its standby again.
///
/// With pg_auto_failover 2.0 and PostgreSQL 15 the rewind of a killed primary fails
/// (pg_autoctl runs crash recovery first and leaves that postgres running, so pg_rewind's
/// own single-user recovery finds postmaster.pid taken), and pg_autoctl copies the node
/// anew with pg_basebackup, which waits for a spread checkpoint on the primary: minutes
/// on a primary with much to write. A CHECKPOINT every few seconds while waiting ends
/// that wait.
async fn rejoin(holder: &Holder) -> Result<serde_json::Value, String> {
    let started = Instant::now();
    let nodes: Vec<Node> = holder.killed.lock().await.drain(..).collect();
    for &node in &nodes {
        holder
            .formation
            .rejoin(node)
            .await
            .map_err(|e| e.to_string())?;
    }
    let checkpoints = async {
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            checkpoint_primary(&holder.formation).await;
        }
    };
    let settled = async {
        // settled() gives up after its own patience (two minutes); a copy may take longer.
        let mut outcome = Ok(());
        for _ in 0..SETTLE_TRIES {
            outcome = holder.formation.settled().await;
            if outcome.is_ok() {
                break;
            }
        }
        outcome
    };
    let outcome = tokio::select! {
        outcome = settled => outcome,
        _ = checkpoints => unreachable!("the checkpoint loop never ends"),
    };
    outcome.map_err(|e| e.to_string())?;
    Ok(json!({
        "event": "settled",
        "rejoined": nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Tells the primary, if there is one, to checkpoint now; errors are of no interest.
async fn checkpoint_primary(formation: &Formation) {
    if let Ok(Some(primary)) = formation.primary().await
        && let Ok(client) = atelier::db::connect(&formation.node_url(primary, "postgres")).await
    {
        let _ = client.batch_execute("CHECKPOINT").await;
    }
}

/// Sends `command` to the holder in `dir`, handing each answer line to `each` as it
/// comes; the last one ends the command.
pub async fn command(
    dir: &Path,
    command: &str,
    mut each: impl FnMut(&serde_json::Value),
) -> Result<serde_json::Value, String> {
    let socket = socket_path(dir);
    let stream = UnixStream::connect(&socket)
        .await
        .map_err(|e| format!("no formation holder at {}: {e}", socket.display()))?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(read).lines();
    let mut last = None;
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        if let Some(error) = value.get("error") {
            return Err(format!("{command}: {}", error.as_str().unwrap_or("failed")));
        }
        each(&value);
        last = Some(value);
    }
    last.ok_or_else(|| format!("{command}: the holder closed without an answer"))
}
