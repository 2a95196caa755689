//! `revshare token` and `revshare serve` as a user runs them: the real binary, a real port, a
//! raw HTTP/1.1 client, and SIGTERM to stop it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

fn revshare(data: &Path, args: &[&str]) -> Output {
    Process::cargo_bin("revshare")
        .expect("the revshare binary")
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("REVSHARE_DATABASE_URL")
        .env_remove("REVSHARE_SIGNING_KEY")
        .output()
        .expect("revshare runs")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "revshare failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// One HTTP/1.1 request; the status code and the body.
fn request(address: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    send(address, method, path, token, &[], &[])
}

/// One HTTP/1.1 request with header lines (`Name: value`) and a body.
fn send(address: &str, method: &str, path: &str, token: Option<&str>, headers: &[&str], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("the server accepts connections");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let length = body.len();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}{extra}Content-Length: {length}\r\nConnection: close\r\n\r\n")
        .expect("send");
    stream.write_all(body).expect("send the body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Stops the server with SIGTERM if a test fails half-way.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `revshare serve` on a free port over `data`: the server, its address and its standard output.
fn start(data: &Path) -> (Server, String, BufReader<ChildStdout>) {
    let mut child = Process::cargo_bin("revshare")
        .expect("the revshare binary")
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("REVSHARE_DATABASE_URL")
        .env_remove("REVSHARE_SIGNING_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("revshare serve starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("standard output"));
    let server = Server(child);
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the first line");
    let address = first.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("the address is printed: {first}")).to_owned();
    (server, address, stdout)
}

#[test]
fn tokens_are_printed_once_and_the_server_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    ok(&revshare(&data, &["init"]));
    ok(&revshare(&data, &["party", "add", "northwind", "--name", "Northwind Cloud", "--role", "host"]));

    let created = revshare(&data, &["token", "create", "--party", "northwind", "--role", "host"]);
    let token = ok(&created).trim().to_owned();
    assert!(token.starts_with("rs_") && token.len() == 3 + 43, "the token alone is printed: {token}");
    let notice = String::from_utf8_lossy(&created.stderr).into_owned();
    let id = notice.split_whitespace().nth(1).expect("the token's id").to_owned();
    assert!(id.starts_with("tok-") && !notice.contains(&token), "the notice names the id, never the token: {notice}");
    let db = std::fs::read(data.join("revshare.db")).expect("the store file");
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()), "the token itself is not stored");

    let wrong = revshare(&data, &["token", "create", "--party", "northwind", "--role", "auditor"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("has role host"), "{}", String::from_utf8_lossy(&wrong.stderr));

    let (mut server, address, mut stdout) = start(&data);
    assert!(!address.ends_with(":0"), "the real port is printed: {address}");
    // The server runs without transparent huge pages (their zeroing lengthened batch latency).
    if cfg!(target_os = "linux") {
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).expect("the server's status");
        assert!(status.lines().any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])), "THP off in the server: {status}");
    }

    assert_eq!(request(&address, "GET", "/healthz", None).0, 200);
    let (status, note) = request(&address, "GET", "/v1/log/checkpoint", Some(&token));
    assert_eq!(status, 200, "{note}");
    assert!(note.starts_with("revshare.local/log\n"), "a checkpoint of the deployment's log: {note}");
    assert_eq!(request(&address, "GET", "/v1/log/checkpoint", None).0, 401);

    ok(&revshare(&data, &["token", "revoke", &id]));
    let (status, problem) = request(&address, "GET", "/v1/balances", Some(&token));
    assert_eq!(status, 401);
    assert!(problem.contains("revoked"), "{problem}");

    let child = &mut server.0;
    let pid = child.id().to_string();
    assert!(Process::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server stops within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "a graceful stop exits 0: {status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the rest of the output");
    assert_eq!(rest.trim(), "stopped");
}

/// The repository's examples folder.
fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A store in `dir/data` with the example's parties, models and agreement, and northwind's key
/// (`dir/northwind.key`, registered) and host token: the store, the key file and the token.
fn registered(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let data = dir.join("data");
    ok(&revshare(&data, &["init"]));
    ok(&revshare(&data, &["party", "add", "meridian", "--name", "Meridian AI", "--role", "licensor"]));
    ok(&revshare(&data, &["party", "add", "northwind", "--name", "Northwind Cloud", "--role", "host"]));
    ok(&revshare(&data, &["party", "add", "southwind", "--name", "Southwind Compute", "--role", "host"]));
    for model in ["m-8b", "m-70b"] {
        ok(&revshare(&data, &["model", "add", model, "--owner", "meridian"]));
    }
    ok(&revshare(&data, &["agreement", "add", examples().join("agreement.toml").to_str().expect("UTF-8")]));
    let key = dir.join("northwind.key");
    ok(&revshare(&data, &["keys", "generate", "--name", "northwind", "--out", key.to_str().expect("UTF-8")]));
    ok(&revshare(&data, &["party", "key", "--party", "northwind", &format!("{}.pub", key.display())]));
    let token = ok(&revshare(&data, &["token", "create", "--party", "northwind", "--role", "host"])).trim().to_owned();
    (data, key, token)
}

/// A host signs a batch on its own machine with `revshare batch sign`; the server takes the file
/// with the two headers printed, and refuses them on a file changed after signing.
#[test]
fn a_batch_signed_offline_is_accepted_and_a_changed_one_is_not() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (data, key, token) = registered(dir.path());
    let examples = examples();
    // Northwind's records of the example, as its own file.
    let usage = std::fs::read_to_string(examples.join("usage.jsonl")).expect("the example usage");
    let lines: String = usage.lines().filter(|l| l.contains("\"host\":\"northwind\"")).map(|l| format!("{l}\n")).collect();
    let file = dir.path().join("october.jsonl");
    std::fs::write(&file, &lines).expect("write the batch");

    // Signed with no store at all: the command reads only the file and the key.
    let nowhere = dir.path().join("no-store");
    let signed = revshare(&nowhere, &["batch", "sign", file.to_str().expect("UTF-8"), "--key", key.to_str().expect("UTF-8")]);
    let headers = ok(&signed);
    assert!(!nowhere.exists(), "signing opens no store");
    let headers: Vec<&str> = headers.lines().collect();
    assert!(
        headers.len() == 2 && headers[0].starts_with("Revshare-Signature: ") && headers[1].starts_with("Revshare-Record-Key: "),
        "{headers:?}"
    );
    let notice = String::from_utf8_lossy(&signed.stderr).into_owned();
    assert!(notice.contains("signed 8 records of northwind") && notice.contains("sha256:"), "{notice}");
    let json = ok(&revshare(&nowhere, &["batch", "sign", file.to_str().expect("UTF-8"), "--key", key.to_str().expect("UTF-8"), "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!((json["host"].as_str(), json["records"].as_u64()), (Some("northwind"), Some(8)));
    assert!(json["batch_digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{json}");

    let (_server, address, _stdout) = start(&data);
    let mut with: Vec<&str> = headers.clone();
    with.push("Content-Type: application/x-ndjson");
    // The same headers on a file changed after signing: refused, nothing stored.
    let changed = lines.replacen("\"requests\":120000", "\"requests\":1", 1);
    assert_ne!(changed, lines);
    let (status, problem) = send(&address, "POST", "/v1/usage", Some(&token), &with, changed.as_bytes());
    assert!(status == 422 && problem.contains("signature"), "{status} {problem}");
    let (status, answer) = send(&address, "POST", "/v1/usage", Some(&token), &with, lines.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!((answer["accepted"].as_u64(), answer["duplicates"].as_u64()), (Some(7), Some(1)), "the example resends one: {answer}");

    // A file of two hosts is not one batch, and says which record is the other's.
    let both = dir.path().join("both.jsonl");
    std::fs::write(&both, &usage).expect("write");
    let refused = revshare(&nowhere, &["batch", "sign", both.to_str().expect("UTF-8"), "--key", key.to_str().expect("UTF-8")]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(said.contains("is of host southwind") && said.contains("one host's"), "{said}");
}

/// A host countersigns on its own machine only what it verified against an anchor it holds; the
/// server takes the countersignature, and the next bundle shows it.
#[test]
fn a_host_countersigns_offline_what_it_verified() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_owned();
    let (data, _, token) = registered(dir.path());
    let examples = examples();
    let example = |name: &str| examples.join(name).to_str().expect("UTF-8").to_owned();
    ok(&revshare(&data, &["ingest", &example("usage.jsonl")]));
    ok(&revshare(&data, &["close", "--agreement", "meridian-northwind", "--period", "2026-10"]));
    let month = ["--agreement", "meridian-northwind", "--period", "2026-10"];
    ok(&revshare(&data, &[&["statement", "export"][..], &month, &["--bundle", &path("bundle")]].concat()));
    let countersign = |bundle: &str, anchors: &[&str]| {
        let nowhere = dir.path().join("no-store");
        let (key, out) = (path("northwind.key"), path("signature.json"));
        let args = [&["statement", "countersign", bundle, "--key", &key, "--out", &out][..], anchors].concat();
        revshare(&nowhere, &args)
    };

    // Not anchored, or not what the log says: nothing is signed.
    let unanchored = countersign(&path("bundle"), &[]);
    assert!(!unanchored.status.success() && String::from_utf8_lossy(&unanchored.stderr).contains("not anchored"));
    assert!(!dir.path().join("signature.json").exists(), "nothing is written unless it verifies");
    let trust = ["--trust", data.join("deployment.key.pub").to_str().expect("UTF-8")].map(str::to_owned);
    let trust: Vec<&str> = trust.iter().map(String::as_str).collect();
    let forged = dir.path().join("forged");
    std::fs::create_dir_all(&forged).expect("a folder");
    for entry in walk(&dir.path().join("bundle")) {
        let relative = entry.strip_prefix(dir.path().join("bundle")).expect("inside");
        let target = forged.join(relative);
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("folders");
        std::fs::copy(&entry, &target).expect("copy");
    }
    let statement = std::fs::read_to_string(forged.join("statement.json")).expect("the statement");
    let lowered = statement.replacen("\"net_payable\":\"", "\"net_payable\":\"1", 1);
    std::fs::write(forged.join("statement.json"), lowered).expect("forge");
    let refused = countersign(forged.to_str().expect("UTF-8"), &trust);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"), "a changed statement is not countersigned");
    assert!(!dir.path().join("signature.json").exists());

    let signed = countersign(&path("bundle"), &trust);
    let said = ok(&signed);
    assert!(said.starts_with("verified ") && said.contains("countersigned meridian-northwind 2026-10"), "{said}");
    let body = std::fs::read(dir.path().join("signature.json")).expect("the countersignature");

    let (_server, address, _stdout) = start(&data);
    let (status, answer) = send(
        &address,
        "POST",
        "/v1/statements/meridian-northwind/2026-10/signatures",
        Some(&token),
        &["Content-Type: application/json"],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    ok(&revshare(&data, &[&["statement", "export"][..], &month, &["--bundle", &path("again")]].concat()));
    let verified = ok(&revshare(&data, &[&["verify", &path("again")][..], &trust].concat()));
    assert!(verified.contains(", countersigned by the host"), "{verified}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}
