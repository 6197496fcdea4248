//! HTTP for a cluster's REST backends (`squall backend`): hyper on the
//! backend's tokio runtime, one request at a time per connection, every
//! request turned into an [`ApiRequest`] for the backend and its answer
//! written back. Bounded: connections, header and body sizes, and the time
//! a connection may take to send a request's head.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use squall_backend::App;
use squall_proto::api::{ApiRequest, ApiResponse};
use squall_proto::error::ApiError;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The largest request body accepted (the gateway edge's limit too).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// The largest request head.
pub const MAX_HEAD: usize = 64 * 1024;
/// How long a connection may take to send a request's head (idle
/// keep-alive connections included).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Whose `X-Forwarded-For` to believe: the router's hosts (and loopback).
#[derive(Clone, Default)]
pub struct Trusted {
    hosts: Vec<IpAddr>,
}

impl Trusted {
    /// Trusts the hosts of `addrs` (`host:port`, resolved now).
    pub fn resolve(addrs: &[String]) -> Self {
        use std::net::ToSocketAddrs;
        let hosts = addrs.iter().filter_map(|a| a.to_socket_addrs().ok()).flatten().map(|s| s.ip()).collect();
        Trusted { hosts }
    }

    /// The client's address: the forwarded one when a trusted proxy says.
    pub fn client(&self, peer: IpAddr, forwarded: Option<&str>) -> IpAddr {
        let trusted = peer.is_loopback() || self.hosts.iter().any(|h| *h == peer || h.is_unspecified());
        match forwarded {
            Some(f) if trusted => f.rsplit(',').next().and_then(|ip| ip.trim().parse().ok()).unwrap_or(peer),
            _ => peer,
        }
    }
}

/// Serves the backend `app` on `listener` until the task is dropped, with
/// at most `max_connections` connections at once.
pub async fn serve(listener: tokio::net::TcpListener, app: App, trusted: Trusted, max_connections: usize) {
    accept_bounded(listener, max_connections, move |stream, peer| {
        let (app, trusted) = (app.clone(), trusted.clone());
        async move {
            let service = service_fn(move |req| answer(app.clone(), trusted.clone(), peer, req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD.max(8192))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
    })
    .await
}

/// Accepts connections on `listener` and runs `serve_one` for each on a task
/// of its own, with at most `max_connections` at once (the next accept waits
/// for a slot); an accept failure (out of descriptors, say) backs off.
pub async fn accept_bounded<F, Fut>(listener: tokio::net::TcpListener, max_connections: usize, mut serve_one: F)
where
    F: FnMut(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let work = serve_one(stream, peer);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
}

async fn answer(
    app: App,
    trusted: Trusted,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_big = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            let err = if too_big {
                ApiError::new(413, "BAD_REQUEST", "Request body too large")
            } else {
                ApiError::bad_request("The request body could not be read")
            };
            return Ok(to_hyper(err.into()));
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let forwarded = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = trusted.client(peer.ip(), forwarded);
    let path = squall_gateway::http::parse::percent_decode_path(parts.uri.path());
    let req = ApiRequest {
        method: parts.method.as_str().to_ascii_uppercase(),
        path,
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers,
        body: body.to_vec(),
        peer: Some(client),
    };
    Ok(to_hyper(app.handle(req).await))
}

/// An [`ApiResponse`] as hyper's.
pub fn to_hyper(r: ApiResponse) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(r.status);
    if !r.body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    for (k, v) in &r.headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(r.body))).unwrap_or_else(|_| {
        let mut resp = Response::new(Full::new(Bytes::from_static(
            br#"{"result":"error","msg":"Internal server error","code":"BAD_REQUEST"}"#,
        )));
        *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let t = Trusted { hosts: vec!["10.0.0.5".parse().unwrap()] };
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(t.client("10.0.0.5".parse().unwrap(), Some("203.0.113.9")), client);
        assert_eq!(t.client("127.0.0.1".parse().unwrap(), Some("1.1.1.1, 203.0.113.9")), client, "the last hop");
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(t.client(stranger, Some("203.0.113.9")), stranger, "anyone else cannot claim an address");
        assert_eq!(t.client("10.0.0.5".parse().unwrap(), Some("junk")), "10.0.0.5".parse::<IpAddr>().unwrap());
    }
}
