//! One client connection: read → parse → route → write, with keep-alive.
//!
//! Routes: `/events` ([`crate::events`]), the event server's internal
//! endpoints ([`crate::internal`]), `/metrics`, and everything else to the
//! [`crate::backend::Backend`].

use crate::ctx::CoreCtx;
use crate::http::{self, Parsed};
use crate::stats::CoreStats;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use squall_proto::api::{ApiRequest, ApiResponse};
use squall_proto::error::ApiError;
use std::rc::Rc;

const READ_CHUNK: usize = 8192;

/// Serves one connection until it closes.
pub async fn serve(stream: TcpStream, ctx: Rc<CoreCtx>) {
    CoreStats::add(&ctx.counters().connections, 1);
    serve_requests(stream, &ctx).await;
    CoreStats::add(&ctx.counters().connections, -1);
}

async fn serve_requests(mut stream: TcpStream, ctx: &Rc<CoreCtx>) {
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        match http::parse(&buf) {
            Parsed::Complete(req, used) => {
                buf.drain(..used);
                CoreStats::bump(&ctx.counters().requests);
                let head_only = req.api.method == "HEAD";
                let mut keep_alive = req.keep_alive;
                let req = ApiRequest { peer, ..req.api };
                let Some(resp) = route(req, ctx, &mut stream, &mut buf).await else { return };
                keep_alive &= !ctx.shutting_down.get();
                let (res, _) = stream.write_all(http::response::to_bytes(&resp, keep_alive, head_only)).await;
                if res.is_err() || !keep_alive {
                    return;
                }
            }
            Parsed::Incomplete => {
                chunk.clear();
                let (res, back) = stream.read(chunk).await;
                chunk = back;
                match res {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            Parsed::Invalid(status, reason) => {
                let resp: ApiResponse = ApiError { status, ..ApiError::bad_request(reason) }.into();
                let _ = stream.write_all(http::response::to_bytes(&resp, false, false)).await;
                return;
            }
        }
    }
}

/// Answers one request; `None` when the client went away while waiting.
async fn route(
    req: ApiRequest,
    ctx: &Rc<CoreCtx>,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> Option<ApiResponse> {
    let path = req.path.trim_end_matches('/');
    if crate::events::is_events_path(path) {
        return crate::events::handle(req, ctx, stream, pending).await;
    }
    if path.starts_with("/api/internal/") {
        return Some(crate::internal::handle(&req, ctx).await);
    }
    if path == "/metrics" {
        return Some(metrics(&req, ctx));
    }
    Some(ctx.backend.handle(req).await)
}

/// `GET /metrics`: Prometheus text, for loopback peers only.
fn metrics(req: &ApiRequest, ctx: &CoreCtx) -> ApiResponse {
    if !req.peer.is_some_and(|p| p.is_loopback()) {
        return ApiError::not_found().into();
    }
    let mut r = ApiResponse::json(200, ctx.stats.prometheus());
    r.headers.push(("Content-Type", "text/plain; version=0.0.4".into()));
    r
}
