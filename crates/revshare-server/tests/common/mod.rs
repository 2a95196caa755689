//! The harness shared by the HTTP API's test suites (`api.rs`, `confidentiality.rs`): a real
//! server on port 0 over a fresh SQLite file or PostgreSQL database, a real HTTP client, tokens.

#![allow(dead_code, reason = "each test crate uses part of the harness")]

use std::sync::Arc;

use revshare_core::ids::PartyId;
use revshare_core::note::SignerKey;
use revshare_core::time::Instant;
use revshare_server::{Config, OpenStore, Timeouts, auth};
use revshare_store::{PgStore, Role, SqliteStore, Store};
use revshare_testdb::PgTestDb;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Harness

pub trait TestDb {
    fn opener(&self) -> OpenStore;
    /// Writers at once, as `revshare serve` configures them for this database.
    fn max_writers(&self) -> usize;
}

pub fn open(db: &dyn TestDb) -> Box<dyn Store + Send> {
    (db.opener())().expect("the store opens")
}

pub const MAX_CONNECTIONS: usize = 8;

pub struct SqliteDb {
    dir: tempfile::TempDir,
}

impl SqliteDb {
    pub fn new() -> SqliteDb {
        SqliteDb { dir: tempfile::tempdir().expect("a temporary directory") }
    }
}

impl TestDb for SqliteDb {
    fn opener(&self) -> OpenStore {
        let file = self.dir.path().join("revshare.db");
        Arc::new(move || Ok(Box::new(SqliteStore::open(&file).map_err(Box::new)?) as Box<dyn Store + Send>))
    }

    fn max_writers(&self) -> usize {
        1
    }
}

pub struct PgDb(PgTestDb);

impl PgDb {
    pub fn new() -> PgDb {
        PgDb(PgTestDb::new("revshare_api_test"))
    }

    /// Cuts every connection to this test's database but the caller's own, as a database restart
    /// does; returns how many were cut.
    pub fn cut_connections(&self) -> u64 {
        let mut client = self.0.config.connect(postgres::NoTls).expect("a connection to the test database");
        let row = client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .expect("the connections are cut");
        u64::try_from(row.get::<_, i64>(0)).expect("a count")
    }
}

impl TestDb for PgDb {
    fn opener(&self) -> OpenStore {
        let config = self.0.config.clone();
        Arc::new(move || Ok(Box::new(PgStore::connect_with(&config).map_err(Box::new)?) as Box<dyn Store + Send>))
    }

    fn max_writers(&self) -> usize {
        MAX_CONNECTIONS
    }
}

/// Each named test (a `fn(&dyn TestDb)`) on a fresh SQLite file and on a fresh PostgreSQL database.
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::SqliteDb::new()); } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(&super::PgDb::new()); } )*
        }
    };
}

/// A fixed clock: checkpoints are reproducible.
pub fn clock() -> Instant {
    // 2026-11-05T00:00:00Z: October can be closed (from November 4th), November cannot.
    Instant::from_parts(1_793_836_800, 0)
}

pub fn deployment_key() -> SignerKey {
    SignerKey::from_seed("revshare.test/log", [42; 32]).expect("a deployment key")
}

/// Runs async test code on a runtime of its own (store calls of the sync PostgreSQL client must
/// not run on it: they go through `spawn_blocking`).
pub fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime").block_on(future)
}

/// A server on 127.0.0.1 port 0.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// A client that does not follow redirects, as the dashboard's tests need (its cookies are
    /// sent by hand).
    pub pages: reqwest::Client,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub open: OpenStore,
}

impl Api {
    pub async fn start(db: &dyn TestDb, max_body_bytes: usize) -> Api {
        Api::start_limited(db, max_body_bytes, 0).await
    }

    pub async fn start_limited(db: &dyn TestDb, max_body_bytes: usize, rate_limit_per_second: u32) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().expect("the bound address"));
        let config = Config {
            open: db.opener(),
            key: deployment_key(),
            clock,
            max_body_bytes,
            max_connections: MAX_CONNECTIONS,
            max_writers: db.max_writers(),
            rate_limit_per_second,
            timeouts: Timeouts {
                head: std::time::Duration::from_secs(1),
                body_idle: std::time::Duration::from_secs(1),
                shutdown_grace: std::time::Duration::from_secs(2),
            },
            webhooks: revshare_server::webhooks::WebhookConfig {
                allowed_hosts: vec!["loopback".to_owned()],
                retry_base: std::time::Duration::from_millis(100),
                pass_every: std::time::Duration::from_millis(50),
            },
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(revshare_server::serve(listener, config, async {
            let _ = stopped.await;
        }));
        let pages = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
        Api { base, client: reqwest::Client::new(), pages, stop: Some(stop), done: Some(done), open: db.opener() }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.expect("the server task").expect("the server stops cleanly");
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let authorization = token.map(|token| ("authorization", format!("Bearer {token}")));
        self.send_with(&self.client, method, path, authorization.as_slice(), content_type, body).await
    }

    /// A request with headers of its own (a dashboard session's cookie, an origin), by `client`.
    pub async fn send_with(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, String)],
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.body(body).send().await.expect("the server answers");
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (content_type, retry_after) = (header("content-type").unwrap_or_default(), header("retry-after"));
        let protections = (header("cache-control"), header("x-content-type-options"));
        let headers = response.headers().iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect();
        let bytes = response.bytes().await.expect("the body").to_vec();
        Reply { status, content_type, retry_after, protections, headers, bytes }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, None, Vec::new()).await
    }

    pub async fn post_usage(&self, token: &str, content_type: &str, body: &str) -> Reply {
        self.send(reqwest::Method::POST, "/v1/usage", Some(token), Some(content_type), body.as_bytes().to_vec()).await
    }

    /// Runs `f` on the store from a blocking thread.
    pub async fn with_store<T: Send + 'static>(&self, f: impl FnOnce(&mut dyn Store) -> T + Send + 'static) -> T {
        let open = Arc::clone(&self.open);
        tokio::task::spawn_blocking(move || f(open().expect("the store opens").as_mut())).await.expect("the store call")
    }
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    /// `Cache-Control` and `X-Content-Type-Options`.
    pub protections: (Option<String>, Option<String>),
    /// Every header, as sent (names lowercase), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The first header of that (lowercase) name, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    /// The body as a problem, checking its form.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.bytes));
        assert_eq!(self.content_type, "application/problem+json");
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert!(problem["type"].as_str().is_some_and(|t| t.starts_with("urn:revshare:problem:")), "{problem}");
        assert!(problem["title"].is_string() && problem["detail"].is_string(), "{problem}");
        problem
    }
}

pub fn unknown_token() -> String {
    auth::encode(&[1; 32])
}

pub fn pid(id: &str) -> PartyId {
    PartyId::parse(id).expect("a party id")
}

/// A token for `party`, made from `label` (a different label, a different token).
pub fn add_token(store: &mut dyn Store, party: &str, role: Role, label: &str) -> String {
    let seed: [u8; 32] = seed_of(label);
    let token = auth::encode(&seed);
    let hash = auth::hash(&token);
    store.add_token(&auth::id_of(&hash), &pid(party), role, &hash).expect("add a token");
    token
}

pub fn seed_of(text: &str) -> [u8; 32] {
    // Any fixed bytes per party will do; the token's hash is what is stored.
    let mut seed = [0u8; 32];
    for (i, b) in text.bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_add(u8::try_from(i).unwrap_or(0));
    }
    seed[31] ^= 0x5a;
    seed
}

impl Reply {
    /// The value of the cookie `name` this answer sets.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers.iter().filter(|(n, _)| n == "set-cookie").find_map(|(_, value)| {
            let text = String::from_utf8_lossy(value);
            let (pair, _) = text.split_once(';').unwrap_or((&text, ""));
            pair.strip_prefix(&format!("{name}=")).map(str::to_owned)
        })
    }

    /// The value of the first hidden `csrf` field of a page.
    pub fn csrf(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let at = text.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        text[at..].split('"').next().map(str::to_owned)
    }
}

impl Api {
    /// Signs in to the dashboard with `token` through its form; the session's `Cookie` header.
    pub async fn sign_in(&self, token: &str) -> String {
        let form = self.get("/signin", None).await;
        let (cookie, csrf) = (form.cookie("rs_signin").expect("the sign-in cookie"), form.csrf().expect("the form's token"));
        let body = serde_urlencoded::to_string([("csrf", csrf.as_str()), ("token", token)]).expect("a form");
        let headers = [("cookie", format!("rs_signin={cookie}"))];
        let form_type = Some("application/x-www-form-urlencoded");
        let reply = self.send_with(&self.pages, reqwest::Method::POST, "/signin", &headers, form_type, body.into_bytes()).await;
        assert_eq!(reply.status, 303, "signed in: {}", String::from_utf8_lossy(&reply.bytes));
        format!("rs_session={}", reply.cookie("rs_session").expect("the session cookie"))
    }

    /// A dashboard page with a session's cookie (none: signed out).
    pub async fn page(&self, path: &str, cookie: Option<&str>) -> Reply {
        let headers: Vec<(&str, String)> = cookie.map(|c| ("cookie", c.to_owned())).into_iter().collect();
        self.send_with(&self.pages, reqwest::Method::GET, path, &headers, None, Vec::new()).await
    }

    /// A dashboard form, sent with a session's cookie and the given fields.
    pub async fn form(&self, path: &str, cookie: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Reply {
        let body = serde_urlencoded::to_string(fields).expect("a form");
        let mut headers = vec![("cookie", cookie.to_owned())];
        headers.extend(origin.map(|o| ("origin", o.to_owned())));
        self.send_with(&self.pages, reqwest::Method::POST, path, &headers, Some("application/x-www-form-urlencoded"), body.into_bytes())
            .await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(token), Some("application/json"), body.to_string().into_bytes()).await
    }
}

/// A webhook receiver on 127.0.0.1 port 0: it keeps every request with the status it answered,
/// and answers 500 to as many as it is told to fail.
pub struct Receiver {
    pub url: String,
    state: std::sync::Arc<std::sync::Mutex<ReceiverState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ReceiverState {
    /// Requests still to be answered 500.
    fail: u32,
    got: Vec<Received>,
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub status: u16,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON event")
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::extract::State;
        let state = std::sync::Arc::new(std::sync::Mutex::new(ReceiverState::default()));
        let take = |State(state): State<std::sync::Arc<std::sync::Mutex<ReceiverState>>>,
                    headers: axum::http::HeaderMap,
                    body: axum::body::Bytes| async move {
            let mut state = state.lock().expect("the receiver's state");
            let status = if state.fail > 0 {
                state.fail -= 1;
                500
            } else {
                204
            };
            let headers = headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
            state.got.push(Received { status, headers, body: body.to_vec() });
            axum::http::StatusCode::from_u16(status).expect("a status")
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(take)).with_state(std::sync::Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let url = format!("http://{}/hook", listener.local_addr().expect("the bound address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { url, state, task }
    }

    /// Answers the next `n` requests 500.
    pub fn fail_next(&self, n: u32) {
        self.state.lock().expect("the receiver's state").fail = n;
    }

    pub fn got(&self) -> Vec<Received> {
        self.state.lock().expect("the receiver's state").got.clone()
    }

    /// Waits up to `within` for a request of event type `event` that was answered 2xx.
    pub async fn delivered(&self, event: &str, within: std::time::Duration) -> Received {
        let start = std::time::Instant::now();
        loop {
            let found =
                self.got().into_iter().find(|r| r.status < 300 && r.headers.get("revshare-event-type").map(String::as_str) == Some(event));
            if let Some(found) = found {
                return found;
            }
            assert!(start.elapsed() < within, "no {event} delivered within {within:?}; got {:?}", self.got());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
