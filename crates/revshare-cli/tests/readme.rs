//! The README's walkthrough and `docs/INTEGRATING.md`, each run as a new user pastes it: every
//! ```` ```sh ```` block of the file, in order, in one `bash` session, in a fresh folder holding only a copy of the
//! repository's `examples/`, with the built `revshare` first on the PATH. The first command that
//! fails fails the test, named by its line in the document.
//!
//! A block's info string says how it runs:
//! - ```` ```sh ````: every command must succeed;
//! - ```` ```sh fails ````: the block must exit with code 1, invalid input (a command shown for its
//!   error message);
//! - ```` ```sh server ````: started in the background; the blocks after it run once
//!   `http://127.0.0.1:8080/healthz` answers, and it is stopped (SIGTERM) at the end.
//!
//! Other blocks (```` ```text ````, ```` ```toml ````, …) are not run. The one liberty taken:
//! `127.0.0.1:8080` is replaced everywhere by a free port, so that the test never collides
//! with a server already running on the machine.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// How a shell block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Run,
    Fails,
    Server,
}

/// One ```` ```sh ```` block: how it runs, the line of its first command, its lines.
struct Block {
    kind: Kind,
    first_line: usize,
    lines: Vec<String>,
}

/// A document's shell blocks; an unknown `sh` marker is an error, so a typo cannot skip a block.
fn shell_blocks(name: &str, readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in readme.lines().enumerate() {
        let number = n + 1;
        if let Some(block) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                blocks.extend(open.take().filter(|b| b.first_line > 0));
            } else {
                block.lines.push(line.to_owned());
            }
            continue;
        }
        let Some(info) = line.trim_start().strip_prefix("```") else { continue };
        let mut words = info.split_whitespace();
        let runs = words.next() == Some("sh");
        let kind = match words.next() {
            None => Kind::Run,
            Some("fails") => Kind::Fails,
            Some("server") => Kind::Server,
            Some(other) => panic!("{name}:{number}: unknown block marker `sh {other}` (use `sh`, `sh fails` or `sh server`)"),
        };
        // A block that is not run is still skipped to its end; `first_line` 0 marks it.
        open = Some(Block { kind, first_line: if runs { number + 1 } else { 0 }, lines: Vec::new() });
    }
    assert!(open.is_none(), "{name}: a code block is never closed");
    blocks
}

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The bash script that runs the blocks, and for each of its lines the document line it came from.
fn script(blocks: &[Block], port: u16) -> (String, Vec<usize>) {
    let address = format!("127.0.0.1:{port}");
    let mut script = String::new();
    let mut origin = Vec::new();
    let mut push = |script: &mut String, line: &str, readme_line: usize| {
        script.push_str(line);
        script.push('\n');
        origin.push(readme_line);
    };
    push(&mut script, "set -euo pipefail", 0);
    push(&mut script, "server=", 0);
    // `$server` is the background block's subshell: the server is its child, stopped first.
    push(
        &mut script,
        r#"stop() { if [ -n "$server" ]; then pkill -TERM -P "$server" || true; kill -TERM "$server" 2>/dev/null || true; wait "$server" || true; fi; }"#,
        0,
    );
    push(&mut script, "trap stop EXIT", 0);
    push(&mut script, r#"trap 'echo "FAILED AT SCRIPT LINE $LINENO: $BASH_COMMAND" >&2' ERR"#, 0);
    for block in blocks {
        let lines: Vec<String> = block.lines.iter().map(|l| l.replace("127.0.0.1:8080", &address)).collect();
        match block.kind {
            Kind::Run => {
                for (i, line) in lines.iter().enumerate() {
                    push(&mut script, line, block.first_line + i);
                }
            }
            Kind::Fails => {
                push(&mut script, "set +e; (", block.first_line);
                for (i, line) in lines.iter().enumerate() {
                    push(&mut script, line, block.first_line + i);
                }
                let end = block.first_line + lines.len() - 1;
                push(&mut script, ") > failed.out 2>&1; code=$?; set -e; cat failed.out", end);
                push(&mut script, r#"[ "$code" -eq 1 ] || { echo "expected exit code 1 (invalid input), got $code" >&2; false; }"#, end);
            }
            Kind::Server => {
                push(&mut script, "{", block.first_line);
                for (i, line) in lines.iter().enumerate() {
                    push(&mut script, line, block.first_line + i);
                }
                push(&mut script, "} > server.log 2>&1 &", block.first_line);
                push(&mut script, "server=$!", block.first_line);
                let wait = format!(
                    "for _ in $(seq 300); do curl -sf http://{address}/healthz >/dev/null && break; sleep 0.1; done; \
                     curl -sf http://{address}/healthz >/dev/null || {{ cat server.log >&2; false; }}"
                );
                push(&mut script, &wait, block.first_line);
            }
        }
    }
    (script, origin)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the examples folder");
    for entry in std::fs::read_dir(from).expect("read examples/") {
        let entry = entry.expect("an entry of examples/");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy an example file");
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    runs_as_written("README.md");
}

#[test]
fn the_integrating_guide_runs_as_written() {
    runs_as_written("docs/INTEGRATING.md");
}

/// Runs the document's shell blocks in a fresh folder; the first command that fails fails the
/// test, named by its line in the document.
fn runs_as_written(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join(name)).expect("the document");
    let blocks = shell_blocks(name, &readme);
    assert!(blocks.iter().filter(|b| b.kind == Kind::Run).count() >= 5, "{name}: the walkthrough blocks were not found");
    assert!(blocks.iter().any(|b| b.kind == Kind::Server), "{name}: the serve block was not found");

    let folder = tempfile::tempdir().expect("a fresh folder");
    copy_dir(&root.join("examples"), &folder.path().join("examples"));
    let (script, origin) = script(&blocks, free_port());
    let bin = Path::new(env!("CARGO_BIN_EXE_revshare")).parent().expect("the binary's folder").to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())))
        .expect("a PATH");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(folder.path())
        .env("PATH", path)
        .env_remove("REVSHARE_DATA")
        .env_remove("REVSHARE_DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let mut report = String::new();
        let failed_at = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("FAILED AT SCRIPT LINE "))
            .filter_map(|l| l.split(':').next()?.parse::<usize>().ok())
            .next_back();
        match failed_at.and_then(|n| origin.get(n.checked_sub(1)?)) {
            Some(&line) if line > 0 => writeln!(report, "{name}:{line}: this command failed").expect("write"),
            _ => writeln!(report, "the {name} walkthrough failed").expect("write"),
        }
        writeln!(report, "--- stdout\n{}\n--- stderr\n{stderr}", String::from_utf8_lossy(&out.stdout)).expect("write");
        panic!("{report}");
    }
}

#[test]
fn blocks_are_read_with_their_markers() {
    let readme = "text\n```sh\na\nb\n```\n```toml\nx = 1\n```\n```sh fails\nc\n```\n```sh server\nd\n```\n";
    let blocks = shell_blocks("test", readme);
    let seen: Vec<(Kind, usize, Vec<String>)> = blocks.into_iter().map(|b| (b.kind, b.first_line, b.lines)).collect();
    assert_eq!(
        seen,
        [
            (Kind::Run, 3, vec!["a".to_owned(), "b".to_owned()]),
            (Kind::Fails, 10, vec!["c".to_owned()]),
            (Kind::Server, 13, vec!["d".to_owned()]),
        ]
    );
}
