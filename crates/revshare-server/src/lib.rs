//! `revshare serve`: the authenticated HTTP API over the system of record.
//!
//! What it serves (all JSON unless said otherwise; every error is an RFC 9457 problem, see
//! [`problem`]):
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | 200 when the store answers |
//! | `GET /openapi.json` | anyone | the OpenAPI 3.1 document, generated from the handlers |
//! | `GET /docs/` | anyone | Swagger UI over `/openapi.json`, built into the binary (no network needed) |
//! | `GET /metrics` | anyone | Prometheus counters and latencies (no party data), see `metrics.rs` |
//! | `GET /`, `/signin`, `/statements`, `/usage`, `/disputes`, `/payments`, `/contributions` | a signed-in party | the dashboard's pages and forms (`dashboard`): HTML, over the same handlers |
//! | `POST /v1/usage` | a host, its own records | stores a batch (JSON Lines, a JSON array, or a CloudEvents batch) in one transaction; a signed receipt |
//! | `GET /v1/agreements/{agreement}` | readers of the agreement | its latest version and TOML source |
//! | `GET /v1/usage/batches`, `GET /v1/usage/batches/{leaf}` | a host, its own | its usage batches (paged by the store), each batch's receipt |
//! | `GET /v1/agreements`, `/v1/statements`, `/v1/payments`, `/v1/contributions`, `/v1/disputes`, `/v1/keys` | readers of each item | lists, paged by `limit` and `cursor` and filtered (`page`): `{"items", "next_cursor"}` |
//! | `GET /v1/statements/{agreement}/{period}` | readers of the agreement | the latest statement's canonical bytes |
//! | `GET /v1/statements/{agreement}/{period}/preview` | the agreement's licensor and host | the open month as it would close now, unsigned (`revshare statement preview`) |
//! | `GET /v1/balances` | readers of each agreement | who owes whom, from the journal |
//! | `POST /v1/agreements` | the agreement's licensor | registers a version from its TOML (`revshare agreement add`), or from the same structure in JSON, stored as its TOML conversion |
//! | `POST /v1/close` | the agreement's licensor | closes a month (`revshare close`, the store's `close::close_month`) |
//! | `POST /v1/statements/{agreement}/{period}/signatures` | the agreement's host | countersigns the statement |
//! | `POST /v1/payments` | the paying side | records a payment (`revshare payment record`) |
//! | `GET /v1/payments/{agreement}/{reference}` | readers of the agreement | a payment and where it stands |
//! | `GET /v1/statements/{agreement}/{period}/bundle[?sequence=N]` | readers of the agreement | the statement's bundle as a tar archive (`revshare statement export --bundle`), for `revshare verify` |
//! | `POST /v1/parties` | the operator | registers a party (`revshare party add`) |
//! | `POST /v1/contributions` | the agreement's licensor or host, its own | records a contribution, not accepted (SPEC §5) |
//! | `POST /v1/contributions/acceptances` | the other party of the agreement | accepts a contribution |
//! | `GET /v1/contributions/{agreement}/{contribution}` | readers of the agreement | one contribution |
//! | `POST /v1/tokens`, `POST /v1/tokens/revocations` | the operator | a party's token, shown once; revoking one (`revshare token`) |
//! | `POST /v1/grants`, `POST /v1/grants/revocations` | the operator | an auditor's grant of an agreement, logged (`revshare grant`) |
//! | `GET /v1/grants[?agreement=ID]` | the agreement's parties, the auditor, the operator | grants in force and revoked |
//! | `GET /v1/parties/{party}` | the party itself, its counterparties, auditors granted their agreement, the operator | the party, and its public keys to itself |
//! | `POST /v1/models` | a licensor, its own models; a host, a model derived from one it may name | registers a model, optionally `derived_from` another (`revshare model add`) |
//! | `GET /v1/models/{model}` | any token; a host's model, that host, its licensor and the operator | the model, its owner and what it derives from |
//! | `GET /v1/compliance?period=P` | a licensor, its own | usage no agreement covered and flagged statement lines (`revshare compliance report`) |
//! | `POST /v1/aliases` | a host, for itself | maps the host's own model id to a licensed model (`revshare model alias`) |
//! | `POST /v1/disputes` | the agreement's licensor or host | opens a dispute of a statement or a line (`revshare dispute open`) |
//! | `POST /v1/disputes/{id}/transitions` | the side whose turn it is; an arbiter decides | accept, reject, counter, escalate, decide |
//! | `GET /v1/disputes/{id}` | readers of the agreement; its arbiters once escalated | disputes, their state, deadlines and history |
//! | `POST`, `GET /v1/webhooks`; `GET`, `DELETE /v1/webhooks/{id}`; `GET /v1/webhooks/{id}/deliveries` | a party, its own endpoints | webhook endpoints and their delivery log (`webhooks`) |
//! | `GET /v1/log/checkpoint` | any token | a fresh signed checkpoint (`text/plain`, a C2SP note) |
//! | `GET /v1/log/inclusion?leaf=N[&size=M]` | any token | a leaf's inclusion proof |
//! | `GET /v1/log/consistency?from=M[&to=N]` | any token | the proof that the log only grew |
//!
//! Authentication and scope ([`auth`]): every `/v1` route is behind a middleware that turns
//! `Authorization: Bearer rs_…` into the token's party and role, or answers 401. A host reads
//! and writes only its own records, agreements and statements (it countersigns its statements);
//! a licensor reads its own agreements, registers them and closes their months; a payment is
//! recorded by its paying side only; an auditor reads the agreements the operator granted it, and
//! an arbiter only the disputes escalated to it by an agreement that names it, which it decides
//! (`disputes.rs`; the core decides which side answers what). The operator (`operator.rs`)
//! registers parties, tokens and grants. The registry ([`registry`]): a licensor registers its own
//! models, a host its own model aliases; any token reads a model, and a party is read by itself,
//! its counterparties, the auditors granted an agreement of its and the operator (its keys by
//! itself). Something that exists but
//! belongs to others answers 404 exactly as something that does not exist, so a refusal does not
//! reveal what is there; a write of another party's records (or registry entries) is 403 naming
//! each record (or field). A refused call changes nothing: it is refused before the
//! store is written. Each token may make [`Config::rate_limit_per_second`] requests a second
//! (a burst of as many); more are answered 429 with `Retry-After`, before anything is read.
//!
//! The boundary: this crate only translates HTTP into the same `Store` and core calls the CLI
//! makes (`Store::ingest_group` in atomic mode, `Store::add_agreement`, `close::close_month`,
//! `Store::sign_statement`, `payments::payment_entry`, `receipts::receipt`, `export::bundle`,
//! `Store::add_party` / `add_model` / `add_alias`, `receipts::checkpoint`, the core's
//! `Balances`, the store's proofs) and their results back. The store is synchronous, so each
//! call runs on a blocking thread with a connection from a small pool ([`Config::open`] makes
//! them), at most [`Config::max_connections`] at once; calls that write also queue, first come
//! first served, for one of [`Config::max_writers`] turns, and run on a thread pool of their
//! own. Usage batches queued by then are stored in one transaction by whichever request gets a
//! turn, and those queued meanwhile by the same turn (group commit, see `group.rs`). A batch is
//! acknowledged only after the store has committed it, and a request whose client goes away
//! still runs to its end (the blocking call is not cancelled), so nothing is half-applied.
//! Graceful shutdown stops accepting connections and lets the requests in flight finish. The
//! clock is the edge's: it is [`Config::clock`].

mod agreement_json;
pub mod auth;
pub mod body;
mod compliance;
mod contributions;
mod csv_answer;
mod dashboard;
mod disputes;
pub mod export;
mod extract;
mod group;
mod idempotency;
mod limit;
mod metrics;
mod openapi;
mod operator;
mod page;
pub mod problem;
pub mod registry;
mod routes;
mod schemas;
mod usage;
pub mod webhooks;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use revshare_core::note::SignerKey;
use revshare_core::time::Instant;
use revshare_store::{Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use crate::problem::Problem;

/// Opens a new connection to the store (the CLI's `--data` / `--database`). The error is boxed:
/// `StoreError` is large, and opening is rare.
pub type OpenStore = Arc<dyn Fn() -> Result<Box<dyn Store + Send>, Box<StoreError>> + Send + Sync>;

/// The default limit of a request body: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// What a server needs.
pub struct Config {
    /// Opens a store connection; called when the pool has no idle one.
    pub open: OpenStore,
    /// The deployment's signing key: checkpoints and receipts.
    pub key: SignerKey,
    /// The wall clock, for the `time` line of checkpoints.
    pub clock: fn() -> Instant,
    /// The largest request body accepted; a larger one is 413.
    pub max_body_bytes: usize,
    /// Store calls running at once (and so connections open at most).
    pub max_connections: usize,
    /// Writing store calls running at once; the others wait their turn in arrival order. 1 for
    /// SQLite, which has one writer at a time anyway: writers queued here are served first come,
    /// first served, where SQLite's own busy handler has them sleep and retry, and the unlucky
    /// ones wait for seconds.
    pub max_writers: usize,
    /// Requests a second per token (also the burst); more are answered 429. 0: no limit.
    pub rate_limit_per_second: u32,
    /// How long slow clients are waited for.
    pub timeouts: Timeouts,
    /// Where webhook deliveries may go, and how often they are tried.
    pub webhooks: webhooks::WebhookConfig,
}

/// How long the server waits for a slow client.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// The longest a request's head (its line and headers) may take to arrive; then the
    /// connection is closed.
    pub head: std::time::Duration,
    /// The longest pause inside a request body; then 408, nothing stored.
    pub body_idle: std::time::Duration,
    /// After the shutdown signal, how long requests in flight may still take; then they are cut
    /// off (a store call already running finishes or rolls back: nothing is half-stored).
    pub shutdown_grace: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            head: std::time::Duration::from_secs(10),
            body_idle: std::time::Duration::from_secs(15),
            shutdown_grace: std::time::Duration::from_secs(30),
        }
    }
}

/// How long a connection may sit in the pool before it is checked on checkout.
const CHECK_IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    open: OpenStore,
    /// Idle connections, each with when it was last returned.
    idle: Mutex<Vec<(Box<dyn Store + Send>, std::time::Instant)>>,
    permits: Arc<Semaphore>,
    /// Fair (FIFO) turns for writing calls, taken before a connection.
    writers: Arc<Semaphore>,
    key: SignerKey,
    clock: fn() -> Instant,
    max_body_bytes: usize,
    body_idle: std::time::Duration,
    pub(crate) limiter: limit::RateLimiter,
    /// Failed authentications per client address, counted before the store is asked.
    pub(crate) failures: limit::RateLimiter,
    /// Usage batches waiting for a group commit.
    pub(crate) ingests: group::Queue,
    /// Thread pools of writers, idle: a writing call runs on one of its own ([`Shared::writer_threads`]).
    writer_threads: Mutex<Vec<rayon::ThreadPool>>,
    /// The dashboard's signed-in browsers.
    sessions: dashboard::session::Sessions,
    /// `Idempotency-Key`s whose first request is being answered.
    in_flight: idempotency::InFlight,
    webhooks: webhooks::WebhookConfig,
}

impl Shared {
    pub(crate) fn key(&self) -> &SignerKey {
        &self.key
    }

    pub(crate) fn now(&self) -> Instant {
        (self.clock)()
    }

    /// An idle connection, or a new one. A connection idle for longer than [`CHECK_IDLE_AFTER`]
    /// is asked a trivial question first, and dropped if it cannot answer: a database restarted
    /// (or a connection cut) while it sat in the pool costs no request.
    fn checkout(&self) -> Result<Box<dyn Store + Send>, Problem> {
        loop {
            let idle =
                self.idle.lock().map_err(|_| Problem::internal("the connection pool failed", &"a thread panicked holding it"))?.pop();
            let Some((mut store, since)) = idle else {
                return (self.open)().map_err(|e| Problem::from(*e));
            };
            if since.elapsed() < CHECK_IDLE_AFTER {
                return Ok(store);
            }
            match store.schema_version() {
                Ok(_) => return Ok(store),
                Err(e) => tracing::info!(%e, "an idle connection no longer answers; it is dropped"),
            }
        }
    }

    fn checkin(&self, store: Box<dyn Store + Send>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((store, std::time::Instant::now()));
        }
    }

    /// A thread pool for one writing call, which runs on it with its parallel steps (a usage
    /// batch's placing, summing, encoding): small steps then run on the writer's own thread
    /// instead of being handed to another and waited for, and none queues behind the parsing
    /// of other requests' bodies. Each writer has a pool of its own while it writes: on a shared
    /// one, a writer waiting for its parallel step could take up another writer's call on the
    /// same thread, and if that call waited for a lock the first holds, neither would go on.
    fn writer_threads(&self) -> Result<rayon::ThreadPool, Problem> {
        let idle = self
            .writer_threads
            .lock()
            .map_err(|_| Problem::internal("the writers' threads failed", &"a thread panicked holding them"))?
            .pop();
        match idle {
            Some(threads) => Ok(threads),
            None => rayon::ThreadPoolBuilder::new()
                .thread_name(|n| format!("writer-{n}"))
                .build()
                .map_err(|e| Problem::internal("cannot start a writer's threads", &e)),
        }
    }

    fn return_writer_threads(&self, threads: rayon::ThreadPool) {
        if let Ok(mut idle) = self.writer_threads.lock() {
            idle.push(threads);
        }
    }
}

impl Drop for Shared {
    /// Closes the idle connections on a thread of their own: a synchronous PostgreSQL client
    /// blocks on its own runtime when closed, which must not happen on the server's.
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner));
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

impl AppState {
    /// Runs `f` with a store connection on a blocking thread. A connection whose call failed in
    /// the database (a 500) is dropped rather than reused.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store, &Shared) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        self.run_holding(None, f).await
    }

    /// [`Self::run`] for a call that writes: it first waits for a writer's turn.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store, &Shared) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let turn = Arc::clone(&self.0.writers).acquire_owned().await.map_err(|e| Problem::internal("the writers' queue is closed", &e))?;
        self.run_holding(Some(turn), f).await
    }

    /// Runs `f` on a blocking thread holding a connection permit, and the writer's `turn` if
    /// given, until `f` returns: a request dropped while `f` runs (its client went away) does
    /// not hand its turn or its connection to another call before `f` is done.
    async fn run_holding<T: Send + 'static>(
        &self,
        turn: Option<OwnedSemaphorePermit>,
        f: impl FnOnce(&mut dyn Store, &Shared) -> Result<T, Problem> + Send + 'static,
    ) -> Result<T, Problem> {
        let permit =
            Arc::clone(&self.0.permits).acquire_owned().await.map_err(|e| Problem::internal("the connection pool is closed", &e))?;
        let shared = Arc::clone(&self.0);
        let writing = turn.is_some();
        let joined = tokio::task::spawn_blocking(move || {
            let _held = (turn, permit);
            let mut store = shared.checkout()?;
            let result = if writing {
                let threads = shared.writer_threads()?;
                let result = threads.install(|| f(store.as_mut(), &shared));
                shared.return_writer_threads(threads);
                result
            } else {
                f(store.as_mut(), &shared)
            };
            if !matches!(&result, Err(p) if p.status.is_server_error()) {
                shared.checkin(store);
            }
            result
        })
        .await;
        joined.map_err(|e| Problem::internal("a store call panicked", &e))?
    }

    /// Queues a usage batch for the next group commit.
    pub(crate) fn queue_ingest(&self, job: group::Job) -> Result<(), Problem> {
        self.0.ingests.push(job)
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        self.0.max_body_bytes
    }

    pub(crate) fn body_idle(&self) -> std::time::Duration {
        self.0.body_idle
    }

    pub(crate) fn limiter(&self) -> &limit::RateLimiter {
        &self.0.limiter
    }

    pub(crate) fn failures(&self) -> &limit::RateLimiter {
        &self.0.failures
    }

    pub(crate) fn sessions(&self) -> &dashboard::session::Sessions {
        &self.0.sessions
    }

    pub(crate) fn in_flight(&self) -> &idempotency::InFlight {
        &self.0.in_flight
    }

    pub(crate) fn webhooks(&self) -> &webhooks::WebhookConfig {
        &self.0.webhooks
    }
}

/// The API's routes, ready to serve.
pub fn router(config: Config) -> Router {
    app(config).0
}

/// The routes and the state they share (the scheduled passes of [`serve`] write through it).
fn app(config: Config) -> (Router, AppState) {
    metrics::install();
    let state = AppState(Arc::new(Shared {
        open: config.open,
        idle: Mutex::new(Vec::new()),
        permits: Arc::new(Semaphore::new(config.max_connections.max(1))),
        writers: Arc::new(Semaphore::new(config.max_writers.max(1))),
        key: config.key,
        clock: config.clock,
        max_body_bytes: config.max_body_bytes,
        body_idle: config.timeouts.body_idle,
        limiter: limit::RateLimiter::new(config.rate_limit_per_second),
        failures: limit::RateLimiter::new(config.rate_limit_per_second),
        ingests: group::Queue::default(),
        writer_threads: Mutex::new(Vec::new()),
        sessions: dashboard::session::Sessions::default(),
        in_flight: idempotency::InFlight::default(),
        webhooks: config.webhooks,
    }));
    let (api, document) = routes::api(Some(state.clone()));
    let allowed = Arc::new(allowed_methods(&document));
    let document = Arc::new(document.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
    // Swagger UI's files are in the binary (the `vendored` feature); it reads the document
    // served below, so the page and the API cannot disagree.
    let docs: Router<AppState> =
        utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::new(["/openapi.json"])).into();
    let router = api
        .merge(docs)
        .merge(dashboard::routes())
        .route("/metrics", get(metrics::render))
        .route(
            "/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document.to_string()) }
            }),
        )
        .fallback(routes::no_route)
        .layer(axum::middleware::from_fn_with_state(allowed, protect))
        .layer(axum::middleware::from_fn(metrics::track))
        // Bodies are read by `body::read`, which answers 413 as a problem.
        .layer(DefaultBodyLimit::disable())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(state.clone());
    (router, state)
}

/// What every answer has: nothing is stored by a cache on the way (answers are per token, and a
/// shared proxy must not hand one party's to another), browsers take each answer as its declared
/// type, never sniffing a JSON or text answer into something they would run; and every refusal is
/// a problem (RFC 9457): a method a route does not answer names the ones it does (axum's own 405
/// has an empty body) and keeps `Allow`, and an extractor's plain-text refusal becomes the detail.
async fn protect(
    axum::extract::State(allowed): axum::extract::State<Arc<HashMap<String, String>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse as _;
    let method = request.method().clone();
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let mut response = next.run(request).await;
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let problem_json = content_type.is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json"));
    // The dashboard's refusals are pages of their own (`dashboard::error_page`).
    let page = content_type.is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED && !problem_json {
        let allow = route.and_then(|route| allowed.get(&route).cloned()).unwrap_or_default();
        let detail = format!("this route does not answer {method}; it answers {allow}");
        response = problem::Problem::new(status, "method-not-allowed", "method not allowed", detail).into_response();
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
    } else if status.is_client_error() && !problem_json && !page {
        // An extractor's own refusal (a path or query that does not decode): its plain text,
        // escaped, as the detail of a problem like every other.
        let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
        let detail = revshare_core::text::printable(String::from_utf8_lossy(&text).trim(), 400);
        let kind = match status {
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::PAYLOAD_TOO_LARGE => "too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            _ => "bad-request",
        };
        response = problem::Problem::new(status, kind, status.canonical_reason().unwrap_or("refused"), detail).into_response();
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Each documented route's methods, as an `Allow` header lists them (a GET route answers HEAD
/// too), from the OpenAPI document the routes are generated with.
fn allowed_methods(document: &utoipa::openapi::OpenApi) -> HashMap<String, String> {
    document
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods: Vec<&str> = [
                (item.get.is_some(), "GET"),
                (item.get.is_some() || item.head.is_some(), "HEAD"),
                (item.post.is_some(), "POST"),
                (item.put.is_some(), "PUT"),
                (item.patch.is_some(), "PATCH"),
                (item.delete.is_some(), "DELETE"),
            ]
            .into_iter()
            .filter_map(|(answered, name)| answered.then_some(name))
            .collect();
            (path.clone(), methods.join(", "))
        })
        .collect()
}

/// The OpenAPI 3.1 document of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::api(None).1
}

/// Serves the API on `listener` until `shutdown` completes, then lets the requests in flight
/// finish, for at most [`Timeouts::shutdown_grace`], before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Timeouts { head, shutdown_grace: grace, .. } = config.timeouts;
    let (router, state) = app(config);
    let passes = tokio::spawn(escalation_passes(state.clone()));
    let deliveries = tokio::spawn(webhooks::passes(state));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(head);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: the connection is lost, the server is not.
                    tracing::warn!(%e, "a connection could not be accepted");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Each request knows its client's address: failed authentications are limited by it.
        let service = router.clone().layer(axum::Extension(axum::extract::ConnectInfo(address)));
        let connection = builder
            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(service))
            .into_owned();
        tokio::spawn(graceful.watch(connection));
    }
    // No new connections; those open finish their requests, for at most `grace`.
    drop(listener);
    passes.abort();
    deliveries.abort();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "requests still in flight after the shutdown grace period are cut off");
        }
    }
    Ok(())
}

/// How often the writer logs the dispute escalations that deadlines have made due.
const ESCALATION_PASS: std::time::Duration = std::time::Duration::from_secs(60);

/// The writer's scheduled pass: every [`ESCALATION_PASS`] from the start, the escalations due are logged in a
/// writer's turn, so reads, which only show them ([`revshare_store::StoredDispute::effective`]),
/// never write. A failed pass is logged and tried again at the next.
async fn escalation_passes(state: AppState) {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + ESCALATION_PASS, ESCALATION_PASS);
    loop {
        every.tick().await;
        match state.write(|store, shared| Ok(store.escalate_disputes(shared.now())?)).await {
            Ok(0) => {}
            Ok(applied) => tracing::info!(applied, "dispute escalations logged"),
            Err(problem) => tracing::warn!(detail = %problem.detail, "the escalation pass failed"),
        }
    }
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(%e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(%e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

/// Whether what goes to standard error may be coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything (no-color.org), so a redirected log holds no escape codes.
pub fn stderr_in_colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Structured logs to standard error: JSON objects, or compact lines, coloured only when
/// [`stderr_in_colour`]; `RUST_LOG` filters them (default `info`).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(stderr_in_colour());
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.compact().try_init() };
}
