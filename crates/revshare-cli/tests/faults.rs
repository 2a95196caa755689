//! Faults under the real `revshare serve`: the database restarted under load, two replicas on one
//! database, a full disk under the SQLite store, and clients that vanish mid-body.
//!
//! Each test runs the real binary (`env!("CARGO_BIN_EXE_revshare")`) on a real port, talks to it
//! with a raw HTTP/1.1 client (one connection per request, every read and write under a timeout,
//! so a fault fails a test instead of hanging it) and counts what was stored by closing the month
//! with the CLI: the statement's `inputs.records` is the number of distinct records stored. Child
//! processes, the private PostgreSQL instance and the tmpfs are undone by `Drop` guards, so a
//! failing test leaves nothing behind. Names with `postgres` need PostgreSQL (the shared server
//! at 127.0.0.1:5432 for the replicas; the restart test starts a private one of its own, and the
//! tmpfs test mounts a file system, so both need root).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use revshare_testdb::PgTestDb;
use serde_json::Value;

/// How long any one read or write of a socket may take before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

const AGREEMENT: &str = "meridian-northwind";

// ---------------------------------------------------------------------------------------------
// The store, the CLI and the server

/// Where a test's store is: a data folder (the SQLite file and the deployment key) and, for
/// PostgreSQL, the database URL. `scratch` holds the server's log.
struct Place {
    scratch: tempfile::TempDir,
    data: PathBuf,
    database: Option<String>,
}

impl Place {
    fn sqlite() -> Place {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let data = scratch.path().join("data");
        Place { scratch, data, database: None }
    }

    /// A data folder somewhere else (a tmpfs).
    fn sqlite_in(data: &Path) -> Place {
        Place { scratch: tempfile::tempdir().expect("a temporary directory"), data: data.to_owned(), database: None }
    }

    fn postgres(url: String) -> Place {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let data = scratch.path().join("data");
        Place { scratch, data, database: Some(url) }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_revshare"));
        command
            .env_remove("REVSHARE_DATA")
            .env_remove("REVSHARE_DATABASE_URL")
            .env_remove("REVSHARE_SIGNING_KEY")
            .arg("--data")
            .arg(&self.data);
        if let Some(url) = &self.database {
            command.arg("--database").arg(url);
        }
        command.args(args);
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        let out: Output = self.command(args).output().expect("revshare runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(out.status.success(), "revshare {args:?} failed ({}):\n{}{}", out.status, text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// The worked example's parties, models and agreement (meridian licenses m-8b and m-70b to
    /// northwind); returns a host token of northwind.
    fn register(&self) -> String {
        self.ok(&["init"]);
        self.ok(&["party", "add", "meridian", "--name", "Meridian", "--role", "licensor"]);
        self.ok(&["party", "add", "northwind", "--name", "Northwind", "--role", "host"]);
        for model in ["m-8b", "m-70b"] {
            self.ok(&["model", "add", model, "--owner", "meridian"]);
        }
        let agreement = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agreement.toml");
        self.ok(&["agreement", "add", &agreement.display().to_string()]);
        let token = self.ok(&["token", "create", "--party", "northwind", "--role", "host"]).trim().to_owned();
        assert!(token.starts_with("rs_"), "a token: {token}");
        token
    }

    /// `revshare serve` on a free port; `args` go after `serve`.
    fn serve(&self, name: &str, args: &[&str]) -> Server {
        let log_path = self.scratch.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("the server's log file");
        let mut child = self
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("revshare serve starts");
        let stdout = child.stdout.take().expect("standard output");
        let mut server = Server { child, address: String::new(), log: log_path };
        // The first line names the address; the rest of standard output is drained on the side.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(address) = first.trim().strip_prefix("listening on http://") else {
            panic!("revshare serve did not print its address (got {first:?}); its log:\n{}", server.log());
        };
        server.address = address.to_owned();
        server
    }

    /// Closes October with the CLI and returns the statement.
    fn close_october(&self) -> Value {
        let out = self.ok(&["close", "--agreement", AGREEMENT, "--period", "2026-10", "--format", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("the statement is JSON ({e}): {out}"))
    }
}

/// A running `revshare serve`, killed when dropped.
struct Server {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Server {
    /// The end of the server's log, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.char_indices().rev().nth(6000).map_or(0, |(i, _)| i);
        text[start..].to_owned()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An answer: status, headers (names in lower case), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("a JSON body ({e}):\n{self}"))
    }

    fn acknowledged(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "status {}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        write!(f, "\n{}", self.body)
    }
}

/// One request on its own connection (`Connection: close`), every read and write under
/// [`IO_TIMEOUT`].
fn exchange(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    parse_response(&response).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP response: {:?}", String::from_utf8_lossy(&response)))
    })
}

fn parse_response(response: &[u8]) -> Option<Reply> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let mut body = response[end + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    }
    Some(Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn get(server: &Server, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    exchange(&server.address, "GET", path, &headers, b"").unwrap_or_else(|e| panic!("GET {path}: {e}; the server's log:\n{}", server.log()))
}

fn post_usage(address: &str, token: &str, body: &str) -> std::io::Result<Reply> {
    let auth = format!("Bearer {token}");
    exchange(address, "POST", "/v1/usage", &[("Authorization", &auth), ("Content-Type", "application/x-ndjson")], body.as_bytes())
}

/// A batch answered 200: every record of it accepted or a duplicate.
fn stored(reply: &Reply, records: u64) -> (u64, u64) {
    assert_eq!(reply.status, 200, "the batch is stored:\n{reply}");
    let answer = reply.json();
    let (accepted, duplicates) = (answer["accepted"].as_u64().unwrap_or(u64::MAX), answer["duplicates"].as_u64().unwrap_or(u64::MAX));
    assert_eq!(accepted.checked_add(duplicates), Some(records), "every record accepted or a duplicate:\n{reply}");
    assert_eq!((answer["conflicts"].as_u64(), answer["refused"].as_u64()), (Some(0), Some(0)), "{reply}");
    (accepted, duplicates)
}

/// A fault that passes (the store down, busy or full): 503 or 507 with `Retry-After`, an RFC 9457
/// problem saying nothing was changed (or, when a commit was cut short, that it may or may not
/// be stored) — never a 500.
fn assert_passing_fault(reply: &Reply) {
    assert!(matches!(reply.status, 503 | 507), "a passing fault is 503 or 507:\n{reply}");
    assert!(reply.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()), "with Retry-After in seconds:\n{reply}");
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("application/problem+json")), "a problem:\n{reply}");
    let problem = reply.json();
    assert_eq!(problem["status"].as_u64(), Some(u64::from(reply.status)), "{reply}");
    assert!(
        problem["detail"].as_str().is_some_and(|d| d.contains("nothing was changed")
            || d.contains("may or may not be stored")
            || d.starts_with("the database is down")),
        "{reply}"
    );
}

/// The size and root hash lines of a checkpoint (its time line and signature differ per call).
fn checkpoint(server: &Server, token: &str) -> (u64, String) {
    let reply = get(server, "/v1/log/checkpoint", Some(token));
    assert_eq!(reply.status, 200, "{reply}");
    let mut lines = reply.body.lines().skip(1);
    let size = lines.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a checkpoint's size:\n{reply}"));
    (size, lines.next().unwrap_or_default().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Usage

/// A northwind record of October with its own id.
fn record(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","host":"northwind","model":"m-8b","use_case":"search","region":"us","time":"2026-10-12T10:00:00Z","requests":10,"input_tokens":1000,"output_tokens":500,"revenue":"1.50","currency":"USD"}}"#
    )
}

/// `records` distinct records named after `name`, as JSON Lines.
fn batch(name: &str, records: u64) -> String {
    (0..records).map(|k| record(&format!("{name}-{k}")) + "\n").collect()
}

/// The number of distinct records the month's statement counts.
fn records_of(statement: &Value) -> u64 {
    statement["inputs"]["records"].as_u64().unwrap_or_else(|| panic!("inputs.records: {statement}"))
}

/// Waits until `done` holds, checking every 10 ms, or fails saying what it waited for.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL

/// A PostgreSQL instance of this test's own, in a temporary directory: `initdb` and `pg_ctl` run
/// as `postgres` (we are root); stopped immediately when dropped.
struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        assert!(is_root(), "this test needs root: it runs a private PostgreSQL as user postgres");
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed under /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| bin.join("initdb").exists())
            .max()
            .map(|(_, bin)| bin)
            .expect("a PostgreSQL version with initdb under /usr/lib/postgresql");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let chown = Command::new("chown").arg("postgres").arg(dir.path()).status().expect("chown runs");
        assert!(chown.success(), "chown the PostgreSQL directory to postgres");
        let pg = PrivatePg { dir, bin, port: free_port() };
        let data = pg.dir.path().join("data").display().to_string();
        let out = pg.as_postgres("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.pg_ctl(&["-w", "start"]);
        pg
    }

    fn as_postgres(&self, program: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("runuser runs")
    }

    /// `pg_ctl` on the instance, which must succeed.
    fn pg_ctl(&self, args: &[&str]) {
        let dir = self.dir.path().display().to_string();
        let options = format!("-p {} -k {dir} -c listen_addresses=127.0.0.1", self.port);
        let (data, log) = (format!("{dir}/data"), format!("{dir}/log"));
        let mut all = vec!["-D", &data, "-l", &log, "-o", &options];
        all.extend_from_slice(args);
        let out = self.as_postgres("pg_ctl", &all);
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = self.as_postgres("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

// ---------------------------------------------------------------------------------------------
// A small tmpfs

/// A tmpfs of `size` mounted on a temporary directory; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        assert!(is_root(), "this test needs root to mount a tmpfs (mount -t tmpfs) as the store's full disk");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

/// One batch's first answer.
struct Sent {
    batch: u64,
    reply: Reply,
    /// Whether it was answered after the database began to stop.
    after_stop: bool,
    /// Whether it was answered after the database had started again.
    after_start: bool,
}

/// PostgreSQL is stopped (fast shutdown, cutting the server's connections mid-transaction) and
/// started again while a client posts small distinct batches. Proves: every answer is 2xx or a
/// passing fault (503/507, `Retry-After`, a problem), never a 500; during the outage `/healthz`
/// is 503 naming the store and `/livez` 200; afterwards the same `serve` process (no restart)
/// stores batches again; and once every batch refused is resent, each record is stored exactly
/// once — resends of acknowledged batches are duplicates, and a batch refused with "nothing was
/// stored" had indeed stored nothing.
#[test]
fn postgres_restarted_during_ingest_loses_nothing_postgres() {
    const RECORDS: u64 = 5;
    let pg = PrivatePg::start();
    let place = Place::postgres(pg.url());
    let token = place.register();
    let server = place.serve("serve", &["--rate-limit", "0", "--max-connections", "4"]);

    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let (stop, stopped, started) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let client = {
        let (sent, stop, stopped, started) = (sent.clone(), stop.clone(), stopped.clone(), started.clone());
        let (address, token) = (server.address.clone(), token.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let reply = post_usage(&address, &token, &batch(&format!("b{n}"), RECORDS)).unwrap_or_else(|e| panic!("batch {n}: {e}"));
                let (after_stop, after_start) = (stopped.load(Ordering::SeqCst), started.load(Ordering::SeqCst));
                let acknowledged = reply.acknowledged();
                sent.lock().expect("the answers").push(Sent { batch: n, reply, after_stop, after_start });
                if !acknowledged {
                    // Not the 5 s Retry-After asks for: the test wants many batches in the outage.
                    std::thread::sleep(Duration::from_millis(20));
                }
                n += 1;
            }
        })
    };
    let count = |filter: &dyn Fn(&Sent) -> bool| sent.lock().expect("the answers").iter().filter(|s| filter(s)).count();
    let alive = || !client.is_finished();

    wait_until("20 batches acknowledged before the restart", Duration::from_secs(30), || {
        assert!(alive(), "the client stopped");
        count(&|s| s.reply.acknowledged()) >= 20
    });
    stopped.store(true, Ordering::SeqCst);
    pg.pg_ctl(&["-m", "fast", "-w", "stop"]);
    let outage = Instant::now();

    let health = get(&server, "/healthz", None);
    assert_passing_fault(&health);
    assert_eq!(health.status, 503, "{health}");
    let problem = health.json();
    assert_eq!(problem["type"], "urn:revshare:problem:unavailable", "{health}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.starts_with("the database is down")), "{health}");
    // The outage is logged, in plain text: the log is a file, so no colour codes.
    wait_until("the outage in the log", Duration::from_secs(10), || server.log().contains("the store is unavailable"));
    assert!(!server.log().contains('\u{1b}'), "escape codes in a redirected log:\n{}", server.log());
    let live = get(&server, "/livez", None);
    assert_eq!((live.status, live.json()["status"].as_str()), (200, Some("alive")), "{live}");
    wait_until("batches refused during the outage", Duration::from_secs(20), || {
        assert!(alive(), "the client stopped");
        outage.elapsed() > Duration::from_secs(1) && count(&|s| s.after_stop && !s.reply.acknowledged()) >= 5
    });
    assert_eq!(get(&server, "/livez", None).status, 200);

    pg.pg_ctl(&["-w", "start"]);
    started.store(true, Ordering::SeqCst);
    wait_until("/healthz 200 again, without restarting serve", Duration::from_secs(20), || get(&server, "/healthz", None).status == 200);
    wait_until("20 batches acknowledged after the restart", Duration::from_secs(30), || {
        assert!(alive(), "the client stopped");
        count(&|s| s.after_start && s.reply.acknowledged()) >= 20
    });
    stop.store(true, Ordering::SeqCst);
    if let Err(panic) = client.join() {
        std::panic::resume_unwind(panic);
    }

    let sent = std::mem::take(&mut *sent.lock().expect("the answers"));
    let mut accepted = 0;
    for s in &sent {
        if s.reply.acknowledged() {
            accepted += stored(&s.reply, RECORDS).0;
        } else {
            assert_passing_fault(&s.reply);
        }
    }
    let refused: Vec<&Sent> = sent.iter().filter(|s| !s.reply.acknowledged()).collect();
    assert!(
        refused.iter().all(|s| s.after_stop),
        "refusals only after the database stopped; the first:\n{}",
        refused.first().map(|s| s.reply.to_string()).unwrap_or_default()
    );
    assert!(refused.len() >= 5, "batches were refused during the outage");
    eprintln!("{} batches sent, {} refused during the outage", sent.len(), refused.len());

    // Every batch again: those acknowledged are duplicates; those refused are stored now, whole.
    let mut silently_stored = Vec::new();
    for s in &sent {
        let reply = post_usage(&server.address, &token, &batch(&format!("b{}", s.batch), RECORDS))
            .unwrap_or_else(|e| panic!("resending batch {}: {e}", s.batch));
        let (new, duplicates) = stored(&reply, RECORDS);
        if s.reply.acknowledged() {
            assert_eq!((new, duplicates), (0, RECORDS), "batch {} was acknowledged; a resend is duplicates:\n{reply}", s.batch);
        } else if duplicates > 0 && s.reply.to_string().contains("nothing was changed") {
            // A commit cut short may have stored it, and says so; "nothing was changed" may not.
            silently_stored.push((s.batch, s.reply.to_string()));
        }
        accepted += new;
    }
    let total = u64::try_from(sent.len()).expect("a count") * RECORDS;
    assert!(
        silently_stored.is_empty(),
        "batches answered 'nothing was changed' that were stored: {silently_stored:?}\nthe server's log:\n{}",
        server.log()
    );
    assert_eq!(accepted, total, "each record accepted exactly once over every answer");
    assert_eq!(records_of(&place.close_october()), total, "each distinct record stored once");
}

/// Two `revshare serve` processes on one PostgreSQL database (each with its own in-memory index of
/// stored records), every batch sent to both at the same moment. Proves: both acknowledge every
/// batch; exactly one stores it and the other answers it as duplicates (no conflict, no second
/// copy); the statement counts each record once; and both replicas sign the same log, with one
/// leaf per answer.
#[test]
fn two_replicas_on_one_database_store_each_batch_once_postgres() {
    const BATCHES: u64 = 40;
    const RECORDS: u64 = 10;
    let db = PgTestDb::new("revshare_faults_replicas");
    let place = Place::postgres(db.url());
    let token = place.register();
    let replicas = [place.serve("a", &["--rate-limit", "0"]), place.serve("b", &["--rate-limit", "0"])];
    let (leaves_before, _) = checkpoint(&replicas[0], &token);

    // Two clients per replica; at each step all four send at once, each batch to both replicas.
    let barrier = Arc::new(Barrier::new(4));
    let answers: Vec<(usize, u64, Reply)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let (replica, lane) = (client / 2, u64::try_from(client % 2).expect("a lane"));
                let (address, token, barrier) = (replicas[replica].address.clone(), token.clone(), barrier.clone());
                scope.spawn(move || {
                    (lane..BATCHES)
                        .step_by(2)
                        .map(|n| {
                            barrier.wait();
                            let reply = post_usage(&address, &token, &batch(&format!("r{n}"), RECORDS))
                                .unwrap_or_else(|e| panic!("batch {n} to replica {replica}: {e}"));
                            (replica, n, reply)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });

    for n in 0..BATCHES {
        let pair: Vec<(usize, u64)> =
            answers.iter().filter(|(_, m, _)| *m == n).map(|(replica, _, reply)| (*replica, stored(reply, RECORDS).0)).collect();
        let mut accepted: Vec<u64> = pair.iter().map(|(_, a)| *a).collect();
        accepted.sort_unstable();
        assert_eq!(
            accepted,
            [0, RECORDS],
            "batch {n}: one replica stores it, the other answers duplicates: {pair:?} (replica logs:\n{}\n{})",
            replicas[0].log(),
            replicas[1].log()
        );
    }
    let (a, b) = (checkpoint(&replicas[0], &token), checkpoint(&replicas[1], &token));
    assert_eq!(a, b, "both replicas sign the same log");
    // A batch of duplicates is logged too (its receipt proves it was received): a leaf per answer.
    assert_eq!(a.0, leaves_before + 2 * BATCHES, "one leaf per batch answered, by either replica");
    let statement = place.close_october();
    assert_eq!(records_of(&statement), BATCHES * RECORDS, "each record stored once: {statement}");
    assert!(statement["inputs"].get("duplicates").is_none(), "resends are no part of a statement: {statement}");
}

/// The SQLite store's folder is a small tmpfs, mostly taken by a filler file: batches are posted
/// until the disk is full. Proves: the refusal is a passing fault (507 or 503, `Retry-After`, a
/// problem), the log has not grown by it and nothing of the refused batch is stored; once space
/// is freed (the filler deleted), the same `serve` stores that same batch whole, and every
/// acknowledged batch is stored exactly once.
#[test]
fn a_full_disk_under_the_sqlite_store_is_507_and_recovers() {
    const RECORDS: u64 = 200;
    let disk = Tmpfs::mount("8m");
    let place = Place::sqlite_in(disk.path());
    let token = place.register();
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![1u8; 6 << 20]).expect("a 6 MiB filler file on the tmpfs");
    let server = place.serve("serve", &["--rate-limit", "0"]);
    let (leaves_before, _) = checkpoint(&server, &token);

    let mut acknowledged = 0;
    let refusal = loop {
        assert!(acknowledged < 500, "the 8 MiB disk never filled up after {acknowledged} batches");
        let reply = post_usage(&server.address, &token, &batch(&format!("f{acknowledged}"), RECORDS)).expect("a batch is answered");
        if !reply.acknowledged() {
            break reply;
        }
        assert_eq!(stored(&reply, RECORDS), (RECORDS, 0), "a new batch is accepted");
        acknowledged += 1;
    };
    assert!(acknowledged > 0, "some batches fit before the disk filled:\n{refusal}");
    assert_passing_fault(&refusal);
    assert_eq!(refusal.json()["type"], "urn:revshare:problem:storage-full", "{refusal}\n{}", server.log());
    assert_eq!(refusal.status, 507, "{refusal}");
    assert_eq!(checkpoint(&server, &token).0, leaves_before + acknowledged, "the refused batch logged nothing");
    // Still full: refused again, the same way.
    let full = batch(&format!("f{acknowledged}"), RECORDS);
    assert_passing_fault(&post_usage(&server.address, &token, &full).expect("answered"));

    std::fs::remove_file(&filler).expect("free the space");
    let reply = post_usage(&server.address, &token, &full).expect("answered");
    assert_eq!(stored(&reply, RECORDS), (RECORDS, 0), "the refused batch is stored whole now, nothing of it was before");
    acknowledged += 1;
    let again = post_usage(&server.address, &token, &batch("f0", RECORDS)).expect("answered");
    assert_eq!(stored(&again, RECORDS), (0, RECORDS), "an acknowledged batch resent is duplicates");
    // A leaf per batch stored, and one for the batch of duplicates (its receipt proves it arrived).
    assert_eq!(checkpoint(&server, &token).0, leaves_before + acknowledged + 1);
    drop(server);
    assert_eq!(records_of(&place.close_october()), acknowledged * RECORDS, "every acknowledged batch stored once");
}

/// The server's open sockets (file descriptors that are sockets).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()).filter(|l| l.to_string_lossy().starts_with("socket:")).count()
        })
        .unwrap_or(0)
}

/// A counter of `/metrics`, e.g. `revshare_usage_records_total{outcome="accepted"}`.
fn metric(server: &Server, series: &str) -> u64 {
    let reply = get(server, "/metrics", None);
    reply.body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

/// Rounds of clients that send a usage request's head (with its Content-Length) and half its
/// body, then go away — half of them closing the socket outright, half only their sending side —
/// each round followed by a full batch; more of them than the server has store connections
/// (`--max-connections 2`) or default ones (16). Proves: nothing of a cut body is stored or
/// logged, a client that still listens is answered 400 (never 2xx or 5xx), every full batch after
/// them is stored, and the server holds no socket of theirs afterwards.
#[test]
fn clients_vanishing_mid_body_store_nothing_and_cost_nothing() {
    const ROUNDS: u64 = 6;
    const CLIENTS: usize = 8;
    const RECORDS: u64 = 20;
    let place = Place::sqlite();
    let token = place.register();
    let server = place.serve("serve", &["--rate-limit", "0", "--max-connections", "2"]);
    assert_eq!(stored(&post_usage(&server.address, &token, &batch("w", RECORDS)).expect("answered"), RECORDS), (RECORDS, 0));
    let (leaves_before, _) = checkpoint(&server, &token);
    let accepted_before = metric(&server, "revshare_usage_records_total{outcome=\"accepted\"}");
    std::thread::sleep(Duration::from_millis(200));
    let sockets_before = sockets(server.pid());

    for round in 0..ROUNDS {
        let body = batch(&format!("cut{round}"), RECORDS);
        let head = format!(
            "POST /v1/usage HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
            server.address,
            body.len()
        );
        std::thread::scope(|scope| {
            for client in 0..CLIENTS {
                let (head, body, address) = (&head, &body, &server.address);
                scope.spawn(move || {
                    let mut stream = TcpStream::connect(address).expect("connect");
                    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("a read timeout");
                    stream.write_all(head.as_bytes()).expect("the head");
                    stream.write_all(&body.as_bytes()[..body.len() / 2]).expect("half the body");
                    if client % 2 == 0 {
                        return; // Closed outright.
                    }
                    stream.shutdown(Shutdown::Write).expect("shut the sending side");
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).expect("the connection ends, within the timeout");
                    let text = String::from_utf8_lossy(&answer);
                    // Answered 400 (a cut body), or closed without an answer; never stored.
                    if !answer.is_empty() {
                        let reply = parse_response(&answer).unwrap_or_else(|| panic!("an HTTP answer: {text}"));
                        assert_eq!(reply.status, 400, "a cut body is a bad request:\n{reply}");
                        assert!(reply.header("content-type").is_some_and(|t| t.starts_with("application/problem+json")), "{reply}");
                    }
                });
            }
        });
        let reply = post_usage(&server.address, &token, &batch(&format!("full{round}"), RECORDS)).expect("answered");
        assert_eq!(stored(&reply, RECORDS), (RECORDS, 0), "round {round}: a full batch after the cut ones is stored");
    }

    assert_eq!(checkpoint(&server, &token).0, leaves_before + ROUNDS, "only the full batches are logged");
    assert_eq!(metric(&server, "revshare_usage_records_total{outcome=\"accepted\"}"), accepted_before + ROUNDS * RECORDS);
    assert!(sockets_before >= 1, "the listening socket is counted");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sockets(server.pid()) > sockets_before {
        assert!(
            Instant::now() < deadline,
            "the server still holds {} sockets, {sockets_before} before the vanished clients",
            sockets(server.pid())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(server);
    let statement = place.close_october();
    assert_eq!(records_of(&statement), (ROUNDS + 1) * RECORDS, "only the full batches are stored: {statement}");
}
