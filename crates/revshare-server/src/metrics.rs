//! Prometheus metrics at `GET /metrics` (text format, no authentication: they hold counts and
//! latencies, never a party, record or token).
//!
//! - `revshare_usage_records_total{outcome}`: records of usage batches by outcome — `accepted`,
//!   `duplicate` (stored batches), `conflict` and `refused` (batches refused whole).
//! - `revshare_http_request_duration_seconds{method, route, status}`: request latency, a histogram
//!   by the route's pattern (`/v1/statements/{agreement}/{period}`, never the ids in it; `unmatched`
//!   for any other path) and method (`other` for any but the nine standard ones): every label has
//!   a bounded set of values, whatever clients send.
//!
//! The recorder is process-wide (the `metrics` facade has one), installed by the first server.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::problem::Problem;

/// Latency buckets in seconds: 1 ms to 30 s.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's recorder, installed on first use.
fn handle() -> Result<&'static PrometheusHandle, Problem> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("revshare_http_request_duration_seconds".to_owned()), BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Problem::internal("the metrics recorder cannot be installed", e))
}

/// Installs the recorder now, so counts from the first requests are kept.
pub(crate) fn install() {
    if let Err(problem) = handle() {
        tracing::warn!(detail = %problem.detail, "metrics are off");
    }
}

/// Counts the records of a usage batch.
pub(crate) fn records(outcome: &'static str, count: u64) {
    if count > 0 {
        metrics::counter!("revshare_usage_records_total", "outcome" => outcome).increment(count);
    }
}

/// The middleware timing every request.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("revshare_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A request's method as a label: the standard methods by name, any other as `other`, so that
/// made-up methods (anyone may send them, with no token) cannot add series without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(known, _)| known == method).map_or("other", |(_, name)| name)
}

/// `GET /metrics`.
pub(crate) async fn render() -> Response {
    match handle() {
        Ok(handle) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response(),
        Err(problem) => problem.into_response(),
    }
}
