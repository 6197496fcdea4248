//! `GET` and `DELETE /api/v1/events` (and `/json/events`) at the edge:
//! authenticate (per-core cache, else the backend), read the parameters,
//! find the owner core from the queue id, hand the call to it (directly when
//! it is this core, through its inbox otherwise) and wait for the answer
//! while watching the socket for the client going away.

use crate::ctx::CoreCtx;
use crate::state::{bad_queue, EventsCall, EventsOp, Item};
use futures_channel::oneshot;
use monoio::io::{CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use squall_proto::api::{client_name_from_user_agent, ApiRequest, ApiResponse, Params};
use squall_proto::error::ApiError;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::queue_spec;
use squall_proto::user::AuthedUser;
use std::rc::Rc;
use std::time::Instant;

/// Whether `path` (without query, trailing slash trimmed) is the events
/// endpoint.
pub fn is_events_path(path: &str) -> bool {
    path == "/api/v1/events" || path == "/json/events"
}

/// Answers one `/events` request; `None` when the client went away while
/// its poll was parked. `pending` collects bytes of a pipelined next request
/// read while waiting.
pub async fn handle(
    req: ApiRequest,
    ctx: &Rc<CoreCtx>,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> Option<ApiResponse> {
    let method = if req.method == "HEAD" { "GET" } else { req.method.as_str() };
    if method == "OPTIONS" {
        return Some(ApiResponse::options(&["GET", "DELETE"]));
    }
    if method != "GET" && method != "DELETE" {
        return Some(ApiResponse::method_not_allowed(&["GET", "DELETE"]));
    }
    if ctx.shutting_down.get() {
        return Some(ApiError::busy("The server is restarting; try again").into());
    }
    let user = match authenticate(&req, ctx).await {
        Ok(u) => u,
        Err(e) => return Some(e.into()),
    };
    let (core, op) = match parse_call(&req, method, &user, ctx) {
        Ok(c) => c,
        Err(resp) => return Some(resp),
    };
    let polled = match &op {
        EventsOp::Get { queue_id: Some(q), dont_block: false, .. } => Some(*q),
        _ => None,
    };
    let (reply, rx) = oneshot::channel();
    let call = EventsCall { user_id: user.id, op, reply };
    if core == ctx.shard.core {
        let now_ms = ctx.clock.now_ms();
        let mut state = ctx.state.borrow_mut();
        // What reached this core's inbox before this request (a notice
        // from a request that has already returned) comes first, as it
        // would for a request handed over from another core.
        let inbox = &ctx.inboxes[core as usize];
        while let Some(item) = inbox.try_pop() {
            if let Some(stop) = state.handle(item, now_ms) {
                // Shutting down: leave that to the core's loop.
                let _ = inbox.push(stop);
                break;
            }
        }
        state.events(call, now_ms);
    } else if ctx.inboxes[core as usize].push(Item::Events(call)).is_err() {
        return Some(ApiError::busy("Server is busy; try again").into());
    }
    let Some(answer) = wait_or_disconnect(rx, stream, pending).await else {
        // The client left while parked: the owner stops counting it as
        // connected now rather than at the next expiry pass.
        if let Some(q) = polled {
            if core == ctx.shard.core {
                ctx.state.borrow_mut().disconnected(q);
            } else {
                // Best effort: if the inbox is full, expiry notices later.
                let _ = ctx.inboxes[core as usize].push(Item::Disconnected(q));
            }
        }
        return None;
    };
    // The owner only drops a call when it stops.
    Some(answer.unwrap_or_else(|_| ApiError::busy("The server is restarting; try again").into()))
}

async fn authenticate(req: &ApiRequest, ctx: &Rc<CoreCtx>) -> Result<AuthedUser, ApiError> {
    let authorization = req.header("authorization").unwrap_or("");
    let host = req.header("host").unwrap_or("");
    if let Some(user) = ctx.auth_cache.borrow().get(authorization, host, Instant::now()) {
        return Ok(user);
    }
    let probe = ApiRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers.clone(),
        peer: req.peer,
        ..ApiRequest::default()
    };
    let user = ctx.backend.authenticate(probe).await?;
    ctx.auth_cache.borrow_mut().insert(authorization, host, user, Instant::now());
    Ok(user)
}

/// Waits for the owner's answer while watching the socket: a read of 0
/// bytes means the client left. The probe read is cancelled (not dropped)
/// when the answer comes first, and awaited, so a byte it did receive (the
/// start of a pipelined request) is kept for the next parse rather than
/// swallowed by an orphaned in-flight read.
async fn wait_or_disconnect(
    rx: oneshot::Receiver<ApiResponse>,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> Option<Result<ApiResponse, oneshot::Canceled>> {
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
                    return Some(rx.await);
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
    Some(answer)
}

/// Reads the `/events` parameters; returns the owner core and operation.
fn parse_call(
    req: &ApiRequest,
    method: &str,
    user: &AuthedUser,
    ctx: &CoreCtx,
) -> Result<(u16, EventsOp), ApiResponse> {
    let err = |e: ApiError| ApiResponse::from(e);
    let mut p = Params::from_request(req).map_err(err)?;
    let owner = |q: &str| -> Result<(u16, QueueId), ApiResponse> {
        match QueueId::parse(q) {
            Some(id) if id.shard.node == ctx.shard.node && id.shard.core < ctx.topo.cores => Ok((id.shard.core, id)),
            _ => Err(bad_queue(q)),
        }
    };
    if method == "DELETE" {
        let (core, queue_id) = owner(&p.req_str("queue_id").map_err(err)?)?;
        return Ok((core, EventsOp::Delete { queue_id }));
    }
    let client = p.str("client").unwrap_or_else(|| client_name_from_user_agent(req.header("user-agent")));
    let new_queue = Box::new(queue_spec(user, client, req.header("user-agent"), None, &mut p, false).map_err(err)?);
    let queue_id = p.str("queue_id");
    let last_event_id = p.int("last_event_id").map_err(err)?;
    let dont_block = p.bool("dont_block").map_err(err)?.unwrap_or(false);
    let (core, queue_id) = match queue_id {
        None => (ctx.topo.shard_of(user.id).core, None),
        Some(q) => {
            if last_event_id.is_none() {
                return Err(err(ApiError::bad_request("Missing 'last_event_id' argument")));
            }
            let (core, id) = owner(&q)?;
            (core, Some(id))
        }
    };
    Ok((core, EventsOp::Get { queue_id, last_event_id, dont_block, new_queue }))
}
