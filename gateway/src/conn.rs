//! One client connection: read → parse → route → write, with keep-alive.
//!
//! `/events` is served by the core that owns the queue: here if this core
//! owns it, otherwise the request is handed to the owner through its inbox
//! and this connection waits for the answer. Everything else goes to the
//! tokio backend in-process. While a long-poll waits, the connection only
//! watches for the client going away.

use crate::core::{bad_queue, EventsCall, EventsOp, Item};
use crate::http::{self, Parsed, Response};
use crate::shard::CoreCtx;
use futures_channel::oneshot;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use squall_backend::users::User;
use squall_proto::api::{client_name_from_user_agent, ApiRequest, ApiResponse, Params};
use squall_proto::error::ApiError;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::queue_spec;
use squall_shard_router::placement::Topology;
use std::rc::Rc;
use std::time::{Duration, Instant};

const READ_CHUNK: usize = 8192;
/// How long a per-core auth cache entry is trusted.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(30);

/// Serves one connection until it closes.
pub async fn serve(mut stream: TcpStream, ctx: Rc<CoreCtx>) {
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        match http::parse(&buf) {
            Parsed::Complete(req, used) => {
                buf.drain(..used);
                let keep_alive = req.keep_alive;
                let head_only = req.api.method == "HEAD";
                let resp = route(req.api, peer, &ctx, &mut stream, &mut buf).await;
                let Some(resp) = resp else { return };
                let mut bytes = resp.to_bytes(keep_alive);
                if head_only {
                    // Same headers (including Content-Length), no body.
                    bytes.truncate(bytes.len() - resp.body.len());
                }
                let (res, _) = stream.write_all(bytes).await;
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
                let body = ApiError { status, ..ApiError::bad_request(reason) }.body();
                let _ = stream.write_all(Response::json(status, body).to_bytes(false)).await;
                return;
            }
        }
    }
}

fn from_api(r: ApiResponse) -> Response {
    Response { status: r.status, headers: r.headers, body: r.body }
}

/// Answers one request; `None` when the client went away while waiting.
async fn route(
    req: ApiRequest,
    peer: Option<std::net::IpAddr>,
    ctx: &Rc<CoreCtx>,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> Option<Response> {
    let path = req.path.trim_end_matches('/');
    if path.starts_with("/api/internal/") {
        return Some(crate::internal::handle(&req, peer, ctx).await);
    }
    let is_events = path == "/api/v1/events" || path == "/json/events";
    let req = ApiRequest { peer, ..req };
    if is_events {
        return events(req, ctx, stream, pending).await;
    }
    Some(backend(req, ctx).await)
}

async fn backend(req: ApiRequest, ctx: &Rc<CoreCtx>) -> Response {
    let (tx, rx) = oneshot::channel();
    let app = ctx.app.clone();
    ctx.tokio.spawn(async move {
        let _ = tx.send(app.handle(req).await);
    });
    match rx.await {
        Ok(r) => from_api(r),
        Err(_) => from_api(ApiError::internal("backend task dropped the request").into()),
    }
}

async fn authenticate(req: &ApiRequest, ctx: &Rc<CoreCtx>) -> Result<User, ApiError> {
    let key = format!("{}\n{}", req.header("authorization").unwrap_or(""), req.header("host").unwrap_or(""));
    if let Some((user, at)) = ctx.auth_cache.borrow().get(&key) {
        if at.elapsed() < AUTH_CACHE_TTL {
            return Ok(user.clone());
        }
    }
    let (tx, rx) = oneshot::channel();
    let app = ctx.app.clone();
    let probe = ApiRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers.clone(),
        ..ApiRequest::default()
    };
    ctx.tokio.spawn(async move {
        let _ = tx.send(app.authenticate(&probe).await);
    });
    let user = rx.await.map_err(|_| ApiError::internal("auth task dropped"))??;
    let mut cache = ctx.auth_cache.borrow_mut();
    if cache.len() > 100_000 {
        cache.clear();
    }
    cache.insert(key, (user.clone(), Instant::now()));
    Ok(user)
}

async fn events(req: ApiRequest, ctx: &Rc<CoreCtx>, stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Response> {
    let method = if req.method == "HEAD" { "GET" } else { req.method.as_str() };
    if method == "OPTIONS" {
        return Some(Response { status: 204, headers: vec![("Allow", "OPTIONS, GET, DELETE".into())], body: vec![] });
    }
    if method != "GET" && method != "DELETE" {
        let body =
            serde_json::json!({"result": "error", "msg": "Method Not Allowed", "allowed_methods": ["GET", "DELETE"]});
        return Some(Response {
            status: 405,
            headers: vec![("Allow", "OPTIONS, GET, DELETE".into())],
            body: body.to_string().into_bytes(),
        });
    }
    let user = match authenticate(&req, ctx).await {
        Ok(u) => u,
        Err(e) => return Some(from_api(e.into())),
    };
    let call = match parse_events_call(&req, method, &user, ctx.topo) {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    let (core, op) = call;
    let (reply, rx) = oneshot::channel();
    let call = EventsCall { user_id: user.id, op, reply };
    if core == ctx.shard.core {
        let timer = ctx.state.borrow_mut().events(call, crate::shard::now_secs());
        if let Some(t) = timer {
            crate::shard::arm_heartbeat(ctx, t);
        }
    } else if let Err(_back) = ctx.inboxes[core as usize].push(Item::Events(call)) {
        let e = ApiError { status: 503, ..ApiError::bad_request("Server is busy; try again") };
        return Some(from_api(e.into()));
    }
    wait_or_disconnect(rx, stream, pending).await
}

/// Waits for the owner's answer while watching the socket: a read of 0
/// bytes means the client left. The probe read is cancelled (not dropped)
/// when the answer comes first, and awaited, so a byte it did receive (the
/// start of a pipelined request) is kept for the next parse rather than
/// swallowed by an orphaned in-flight read.
async fn wait_or_disconnect(
    rx: oneshot::Receiver<Response>,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> Option<Response> {
    let mut rx = rx;
    let canceller = Canceller::new();
    let probe = stream.cancelable_read(Vec::with_capacity(1), canceller.handle());
    let mut probe = std::pin::pin!(probe);
    let answer = monoio::select! {
        r = &mut rx => r,
        (res, b) = &mut probe => {
            match res {
                Ok(n) if n > 0 => {
                    pending.extend_from_slice(&b[..n]);
                    return rx.await.ok();
                }
                _ => return None,
            }
        }
    };
    canceller.cancel();
    let (res, b) = probe.await;
    if let Ok(n) = res {
        if n == 0 {
            // The client closed while we were answering.
            return None;
        }
        pending.extend_from_slice(&b[..n]);
    }
    Some(answer.unwrap_or_else(|_| from_api(ApiError::internal("queue owner dropped the request").into())))
}

/// Reads the `/events` parameters; returns the owner core and operation.
fn parse_events_call(req: &ApiRequest, method: &str, user: &User, topo: Topology) -> Result<(u16, EventsOp), Response> {
    let err = |e: ApiError| from_api(e.into());
    let mut p = Params::from_request(req).map_err(err)?;
    let ctx_core = |q: &str, cores: u16| -> Result<u16, Response> {
        match QueueId::parse(q) {
            Some(id) if id.shard.node == 0 && id.shard.core < cores => Ok(id.shard.core),
            _ => Err(bad_queue(q)),
        }
    };
    let cores = topo.cores;
    if method == "DELETE" {
        let queue_id = p.req_str("queue_id").map_err(err)?;
        let core = ctx_core(&queue_id, cores)?;
        return Ok((core, EventsOp::Delete { queue_id }));
    }
    let client = p.str("client").unwrap_or_else(|| client_name_from_user_agent(req.header("user-agent")));
    let new_queue =
        Box::new(queue_spec(&user.authed(), client, req.header("user-agent"), None, &mut p, false).map_err(err)?);
    let queue_id = p.str("queue_id");
    let last_event_id = p.int("last_event_id").map_err(err)?;
    let dont_block = p.bool("dont_block").map_err(err)?.unwrap_or(false);
    let core = match &queue_id {
        None => topo.shard_of(user.id).core,
        Some(q) => {
            if last_event_id.is_none() {
                return Err(err(ApiError::bad_request("Missing 'last_event_id' argument")));
            }
            ctx_core(q, cores)?
        }
    };
    Ok((core, EventsOp::Get { queue_id, last_event_id, dont_block, new_queue }))
}
