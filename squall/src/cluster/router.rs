//! `squall router`: a cluster's front door. Every request is read (its body
//! bounded), then sent on over a pooled keep-alive connection and the
//! answer streamed back:
//!
//! - `/events` with a queue id (query string, or the form body of a
//!   `DELETE`) to the gateway node the id names;
//! - `GET /events` without one to a backend (the queue is made on the
//!   user's node through the bus); any other `/events` request to node 0,
//!   which answers Zulip's error;
//! - `/api/internal/...` nowhere (404): those are for the cluster's own
//!   hosts, which call the gateways directly;
//! - everything else to the backends in turn (the next one when one cannot
//!   be reached).
//!
//! The client's `Host` header travels unchanged (realms hang off it) and
//! `X-Forwarded-For` is set to the client's address.

use super::http::{to_hyper, MAX_BODY};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use squall_proto::error::ApiError;
use squall_proto::ids::QueueId;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long an upstream may take to answer (a long-poll's heartbeat comes
/// within ~55 s).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

type Body = Either<Full<Bytes>, Incoming>;

/// Where a request goes.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Target {
    /// Gateway node `n`.
    Gateway(usize),
    /// Any backend.
    Backend,
    /// Not routed (404).
    Nowhere,
}

/// The router's counters (`/metrics` from loopback).
#[derive(Default)]
pub struct RouterStats {
    to_gateways: AtomicU64,
    to_backends: AtomicU64,
    upstream_errors: AtomicU64,
    connections: AtomicU64,
}

/// The router's view of the cluster.
pub struct Router {
    gateways: Vec<String>,
    backends: Vec<String>,
    next_backend: AtomicUsize,
    client: Client<HttpConnector, Full<Bytes>>,
    stats: RouterStats,
}

impl Router {
    /// A router to `gateways` and `backends` (`host:port` each).
    pub fn new(gateways: &[String], backends: &[String]) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(4096)
            .build(connector);
        Arc::new(Router {
            gateways: gateways.to_vec(),
            backends: backends.to_vec(),
            next_backend: AtomicUsize::new(0),
            client,
            stats: RouterStats::default(),
        })
    }

    /// Serves `listener` with at most `max_connections` client connections.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, max_connections: usize) {
        super::http::accept_bounded(listener, max_connections, move |stream, peer| {
            let router = self.clone();
            async move {
                router.stats.connections.fetch_add(1, Ordering::Relaxed);
                let r = router.clone();
                let service = service_fn(move |req| {
                    let r = r.clone();
                    async move { Ok::<_, Infallible>(r.answer(peer, req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                router.stats.connections.fetch_sub(1, Ordering::Relaxed);
            }
        })
        .await
    }

    async fn answer(&self, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        if path == "/health" {
            return own(200, serde_json::json!({"result": "success", "msg": "", "status": "ok"}));
        }
        if path == "/metrics" && peer.ip().is_loopback() {
            return self.metrics();
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(ApiError::new(413, "BAD_REQUEST", "Request body too large")),
        };
        let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        let target = route(parts.method.as_str(), &path, parts.uri.query(), content_type, &body, self.gateways.len());
        let upstreams: Vec<&String> = match target {
            Target::Nowhere => return error(ApiError::not_found()),
            Target::Gateway(n) => {
                self.stats.to_gateways.fetch_add(1, Ordering::Relaxed);
                self.gateways.get(n).into_iter().collect()
            }
            Target::Backend => {
                self.stats.to_backends.fetch_add(1, Ordering::Relaxed);
                // Round robin, then the others in turn if one cannot be reached.
                let start = self.next_backend.fetch_add(1, Ordering::Relaxed);
                (0..self.backends.len()).map(|i| &self.backends[(start + i) % self.backends.len()]).collect()
            }
        };
        let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
        for upstream in upstreams {
            let mut b =
                Request::builder().method(parts.method.clone()).uri(format!("http://{upstream}{path_and_query}"));
            for (k, v) in &parts.headers {
                if !hop_by_hop(k.as_str()) {
                    b = b.header(k, v);
                }
            }
            b = b.header("x-forwarded-for", peer.ip().to_string());
            let Ok(up) = b.body(Full::new(body.clone())) else {
                return error(ApiError::bad_request("Invalid request"));
            };
            match tokio::time::timeout(UPSTREAM_TIMEOUT, self.client.request(up)).await {
                Ok(Ok(resp)) => {
                    let (mut rp, rb) = resp.into_parts();
                    for h in ["connection", "keep-alive", "transfer-encoding"] {
                        rp.headers.remove(h);
                    }
                    return Response::from_parts(rp, Either::Right(rb));
                }
                Ok(Err(e)) if e.is_connect() => {
                    // Nothing was sent: the next backend may take it.
                    self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(upstream, error = %e, "upstream unreachable");
                    continue;
                }
                Ok(Err(e)) => {
                    self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(upstream, error = %e, "upstream failed");
                    return error(ApiError::new(502, "BAD_GATEWAY", "The server is unavailable; try again"));
                }
                Err(_) => {
                    self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                    return error(ApiError::new(504, "GATEWAY_TIMEOUT", "The server did not answer in time"));
                }
            }
        }
        error(ApiError::busy("The server is unavailable; try again"))
    }

    fn metrics(&self) -> Response<Body> {
        let s = &self.stats;
        let text = format!(
            "# TYPE squall_router_requests_total counter\n\
             squall_router_requests_total{{to=\"gateway\"}} {}\n\
             squall_router_requests_total{{to=\"backend\"}} {}\n\
             # TYPE squall_router_upstream_errors_total counter\n\
             squall_router_upstream_errors_total {}\n\
             # TYPE squall_router_connections gauge\n\
             squall_router_connections {}\n",
            s.to_gateways.load(Ordering::Relaxed),
            s.to_backends.load(Ordering::Relaxed),
            s.upstream_errors.load(Ordering::Relaxed),
            s.connections.load(Ordering::Relaxed),
        );
        let mut r = Response::new(Either::Left(Full::new(Bytes::from(text))));
        r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
        r
    }
}

/// Where a request goes, from its method, path (no trailing slash), query
/// string and (form) body; `nodes` gateway nodes.
pub fn route(method: &str, path: &str, query: Option<&str>, content_type: &str, body: &[u8], nodes: usize) -> Target {
    if path.starts_with("/api/internal/") || path == "/api/internal" {
        return Target::Nowhere;
    }
    if path != "/api/v1/events" && path != "/json/events" {
        return Target::Backend;
    }
    let mut queue_id = query.and_then(|q| form_value(q.as_bytes(), "queue_id"));
    if queue_id.is_none() && content_type.starts_with("application/x-www-form-urlencoded") {
        queue_id = form_value(body, "queue_id");
    }
    match queue_id {
        Some(q) => match QueueId::parse(&q) {
            Some(id) if (id.shard.node as usize) < nodes => Target::Gateway(id.shard.node as usize),
            // Unknown: node 0 answers BAD_EVENT_QUEUE_ID.
            _ => Target::Gateway(0),
        },
        None if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") => Target::Backend,
        None => Target::Gateway(0),
    }
}

/// The first value of `name` in a urlencoded form.
fn form_value(form: &[u8], name: &str) -> Option<String> {
    url_pairs(form).find(|(k, _)| k == name).map(|(_, v)| v)
}

fn url_pairs(form: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    form.split(|&b| b == b'&').filter(|p| !p.is_empty()).map(|pair| {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let k = kv.next().unwrap_or_default();
        let v = kv.next().unwrap_or_default();
        (decode(k), decode(v))
    })
}

fn decode(s: &[u8]) -> String {
    let plus: Vec<u8> = s.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    squall_gateway::http::parse::percent_decode_path(&String::from_utf8_lossy(&plus))
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "x-forwarded-for"
    )
}

fn own(status: u16, body: serde_json::Value) -> Response<Body> {
    let r = to_hyper(squall_proto::api::ApiResponse::json(status, body.to_string()));
    r.map(Either::Left)
}

fn error(e: ApiError) -> Response<Body> {
    to_hyper(e.into()).map(Either::Left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_go_to_the_node_their_queue_id_names() {
        let q1 = "1-3-000000000000000000000000deadbeef";
        let form = "application/x-www-form-urlencoded";
        let get = |query: &str| route("GET", "/api/v1/events", Some(query), "", b"", 2);
        assert_eq!(get(&format!("queue_id={q1}&last_event_id=4")), Target::Gateway(1));
        assert_eq!(get(&format!("last_event_id=4&queue_id={}", q1.replace('-', "%2D"))), Target::Gateway(1));
        assert_eq!(route("GET", "/json/events", Some(&format!("queue_id={q1}")), "", b"", 2), Target::Gateway(1));
        assert_eq!(
            route("DELETE", "/api/v1/events", None, form, format!("queue_id={q1}").as_bytes(), 2),
            Target::Gateway(1)
        );
        assert_eq!(get("queue_id=5-0-00"), Target::Gateway(0), "a node the cluster lacks: node 0 refuses it");
        assert_eq!(get("queue_id=garbage"), Target::Gateway(0));
        assert_eq!(get("dont_block=true"), Target::Backend, "a new queue: made through a backend");
        assert_eq!(
            route("DELETE", "/api/v1/events", None, form, b"", 2),
            Target::Gateway(0),
            "node 0 answers the error"
        );
    }

    #[test]
    fn the_rest_goes_to_backends_and_internals_nowhere() {
        assert_eq!(route("POST", "/api/v1/register", None, "", b"", 2), Target::Backend);
        assert_eq!(route("POST", "/api/v1/messages", Some("queue_id=1-0-00"), "", b"", 2), Target::Backend);
        assert_eq!(route("POST", "/api/internal/notify_tornado", None, "", b"", 2), Target::Nowhere);
        assert_eq!(route("POST", "/api/internal/squall/allocate_queue", None, "", b"", 2), Target::Nowhere);
    }
}
