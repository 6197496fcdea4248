//! `GET` and `DELETE /api/v1/events` (and `/json/events`) at the edge.
//!
//! A request naming a queue of another core hands the whole connection to
//! that core ([`Outcome::HandOff`]): from then on the client's polls are
//! served where its queue lives, with no cross-core traffic per poll. On the
//! owner core the request is authenticated (per-core cache, else the
//! backend) and given to the core's state, which answers at once or parks
//! the connection's [`Slot`].
//!
//! The common poll (`GET` with only `queue_id`, `last_event_id` and
//! `dont_block` in the query) is read straight from the request bytes;
//! anything else goes through the full parameter rules of
//! `squall_proto::api::Params`, with the same results.
//!
//! A `GET` without `queue_id` creates a queue, as `POST /register` does, so
//! it costs the same: the backend counts it against the user's rate limit
//! (on the owner core, where the queue is made) before the queue exists.

use crate::ctx::CoreCtx;
use crate::http::parse::Head;
use crate::park::{Answer, Slot};
use crate::state::{bad_queue, EventsOp, PollResult};
use squall_proto::api::{client_name_from_user_agent, ApiRequest, ApiResponse, Params};
use squall_proto::error::ApiError;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::queue_spec;
use squall_proto::user::AuthedUser;
use std::rc::Rc;
use std::time::Instant;

/// Whether `path` (trailing slash trimmed) is the events endpoint.
pub fn is_events_path(path: &str) -> bool {
    path == "/api/v1/events" || path == "/json/events"
}

/// What the connection does with an `/events` request.
pub enum Outcome {
    /// Write this answer from the core.
    Answer(Answer),
    /// Write this response.
    Response(ApiResponse),
    /// The poll is parked on this queue: wait on the connection's slot.
    Parked(QueueId),
    /// Give the connection (and the request, unread) to this core.
    HandOff(u16),
}

/// Work that has to wait for the backend: owned, so the request bytes and
/// head can be let go meanwhile.
pub enum Deferred {
    /// The credentials are not in the cache: the backend checks them.
    Authenticate {
        /// The request (the backend sees its method, path and headers).
        req: ApiRequest,
        /// Its `Authorization` header, the cache key with `host`.
        authorization: Vec<u8>,
        /// Its `Host` header.
        host: Vec<u8>,
        /// The common poll, when the request is one.
        fast: Option<FastPoll>,
        /// `DELETE /events`.
        delete: bool,
    },
    /// A queue to create on this core for a known user: the backend counts
    /// it against the user's rate limit first.
    RateLimit {
        /// Who asks.
        user: AuthedUser,
        /// The creation.
        op: EventsOp,
    },
}

/// Handles one `/events` request whose head is `head` (from `buf`) as far
/// as it can without waiting; what needs the backend comes back as
/// [`Deferred`] for [`finish_deferred`].
pub fn handle(
    head: &Head<'_>,
    buf: &[u8],
    peer: Option<std::net::IpAddr>,
    ctx: &Rc<CoreCtx>,
    slot: &Rc<Slot>,
) -> Result<Outcome, Box<Deferred>> {
    let method = if head.is("HEAD") { "GET" } else { head.method };
    if method.eq_ignore_ascii_case("OPTIONS") {
        return Ok(Outcome::Response(ApiResponse::options(&["GET", "DELETE"])));
    }
    let delete = method.eq_ignore_ascii_case("DELETE");
    if !delete && !method.eq_ignore_ascii_case("GET") {
        return Ok(Outcome::Response(ApiResponse::method_not_allowed(&["GET", "DELETE"])));
    }
    if ctx.shutting_down.get() {
        return Ok(Outcome::Response(ApiError::busy("The server is restarting; try again").into()));
    }
    let fast = if delete { None } else { FastPoll::read(head) };
    // A queue of another core: hand over before doing anything else.
    if let Some(core) = fast.as_ref().and_then(|f| remote_owner(ctx, f.queue_id)) {
        return Ok(Outcome::HandOff(core));
    }
    let authorization = head.header("authorization").unwrap_or(b"");
    let host = head.header("host").unwrap_or(b"");
    let cached = ctx.state.borrow().auth.get(authorization, host, Instant::now());
    // The owned request only when something needs it: the backend (a
    // credential not in the cache) or the general parameter rules.
    let owned = || head.to_api_request(buf, peer).map_err(|i| ApiError::new(i.0, "BAD_REQUEST", i.1));
    let Some(user) = cached else {
        return match owned() {
            Ok(req) => Err(Box::new(Deferred::Authenticate {
                req,
                authorization: authorization.to_vec(),
                host: host.to_vec(),
                fast,
                delete,
            })),
            Err(e) => Ok(Outcome::Response(e.into())),
        };
    };
    let op = match fast {
        Some(f) => f.op(),
        None => match owned().map_err(ApiResponse::from).and_then(|req| parse_op(&req, delete, &user)) {
            Ok(op) => op,
            Err(resp) => return Ok(Outcome::Response(resp)),
        },
    };
    if creates_here(&op, &user, ctx) {
        return Err(Box::new(Deferred::RateLimit { user, op }));
    }
    Ok(run(user, op, ctx, slot))
}

/// Finishes deferred work with the backend's help (authentication, the
/// rate limit of a queue creation), then handles it.
pub async fn finish_deferred(d: Box<Deferred>, ctx: &Rc<CoreCtx>, slot: &Rc<Slot>) -> Outcome {
    let (user, op) = match *d {
        Deferred::RateLimit { user, op } => (user, op),
        Deferred::Authenticate { req, authorization, host, fast, delete } => {
            // A revocation that arrives while the backend checks makes its
            // answer too old to cache.
            let generation = ctx.state.borrow().auth.generation();
            // The backend needs only what identifies the caller, not the body.
            let probe = ApiRequest { body: Vec::new(), ..req.clone() };
            let user = match ctx.backend.authenticate(probe).await {
                Ok(u) => u,
                Err(e) => return Outcome::Response(e.into()),
            };
            ctx.state.borrow_mut().auth.insert(&authorization, &host, user, Instant::now(), generation);
            let op = match fast {
                Some(f) => f.op(),
                None => match parse_op(&req, delete, &user) {
                    Ok(op) => op,
                    Err(resp) => return Outcome::Response(resp),
                },
            };
            (user, op)
        }
    };
    if creates_here(&op, &user, ctx) {
        if let Err(e) = ctx.backend.rate_limit(user).await {
            return Outcome::Response(e.into());
        }
    }
    // The core may have begun to stop while the backend answered.
    if ctx.shutting_down.get() {
        return Outcome::Response(ApiError::busy("The server is restarting; try again").into());
    }
    run(user, op, ctx, slot)
}

/// Whether `op` creates a queue on this core (the user's own), which the
/// rate limit must allow first. A creation that lands on another core is
/// counted where it is handed.
fn creates_here(op: &EventsOp, user: &AuthedUser, ctx: &CoreCtx) -> bool {
    matches!(op, EventsOp::Create { .. }) && ctx.topo.shard_of(user.id).core == ctx.shard.core
}

/// For a request that must be served where its user's queues live (`POST
/// /register` with several gateway processes): the owning core if it is in
/// another process. Unauthenticated requests stay (the backend answers
/// them).
pub async fn owner_elsewhere(req: &ApiRequest, ctx: &Rc<CoreCtx>) -> Option<u16> {
    let authorization = req.header("authorization").unwrap_or("").as_bytes();
    let host = req.header("host").unwrap_or("").as_bytes();
    let cached = ctx.state.borrow().auth.get(authorization, host, Instant::now());
    let user = match cached {
        Some(u) => u,
        None => {
            let generation = ctx.state.borrow().auth.generation();
            let probe = ApiRequest { body: Vec::new(), ..req.clone() };
            let user = ctx.backend.authenticate(probe).await.ok()?;
            ctx.state.borrow_mut().auth.insert(authorization, host, user, Instant::now(), generation);
            user
        }
    };
    let owner = ctx.topo.shard_of(user.id).core;
    ctx.cores.inbox(owner).is_none().then_some(owner)
}

/// Gives an authenticated call to the owner core's state (handing the
/// connection over if the owner is another core).
fn run(user: AuthedUser, op: EventsOp, ctx: &Rc<CoreCtx>, slot: &Rc<Slot>) -> Outcome {
    let owner = match &op {
        EventsOp::Poll { queue_id, .. } | EventsOp::Delete { queue_id } => {
            // A queue no core of this node can hold is this core's to refuse.
            remote_owner(ctx, *queue_id).unwrap_or(ctx.shard.core)
        }
        EventsOp::Create { .. } => ctx.topo.shard_of(user.id).core,
    };
    if owner != ctx.shard.core {
        return Outcome::HandOff(owner);
    }
    let parked = match &op {
        EventsOp::Poll { queue_id, .. } => Some(*queue_id),
        _ => None,
    };
    let now_ms = ctx.clock.now_ms();
    match ctx.state.borrow_mut().events(user.id, op, slot, now_ms) {
        PollResult::Answer(a) => Outcome::Answer(a),
        PollResult::Parked => match parked {
            Some(q) => Outcome::Parked(q),
            None => Outcome::Response(ApiError::internal("a poll without a queue parked").into()),
        },
    }
}

/// The core owning `q` if it is another core of this node.
fn remote_owner(ctx: &CoreCtx, q: QueueId) -> Option<u16> {
    (q.shard.node == ctx.shard.node && q.shard.core < ctx.topo.cores && q.shard.core != ctx.shard.core)
        .then_some(q.shard.core)
}

/// The common poll, read from the query string without allocating.
#[derive(Debug, PartialEq)]
pub struct FastPoll {
    queue_id: QueueId,
    last_event_id: i64,
    dont_block: bool,
}

impl FastPoll {
    fn op(&self) -> EventsOp {
        EventsOp::Poll { queue_id: self.queue_id, last_event_id: Some(self.last_event_id), dont_block: self.dont_block }
    }

    /// `GET` with no body and a query of exactly `queue_id`,
    /// `last_event_id` and optionally `dont_block`, each once, nothing
    /// encoded; `None` sends the request down the general path.
    fn read(head: &Head<'_>) -> Option<FastPoll> {
        if head.body_len != 0 || head.query.contains(['%', '+']) {
            return None;
        }
        let (mut queue_id, mut last, mut dont_block) = (None, None, None);
        for pair in head.query.split('&') {
            let (k, v) = pair.split_once('=')?;
            let slot = match k {
                "queue_id" => &mut queue_id,
                "last_event_id" => &mut last,
                "dont_block" => &mut dont_block,
                _ => return None,
            };
            if slot.replace(v).is_some() {
                return None;
            }
        }
        let dont_block = match dont_block {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return None,
        };
        let last_event_id = last?;
        // JSON integers only: no leading '+', no leading zeros, no spaces.
        let digits = last_event_id.strip_prefix('-').unwrap_or(last_event_id);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        Some(FastPoll { queue_id: QueueId::parse(queue_id?)?, last_event_id: last_event_id.parse().ok()?, dont_block })
    }
}

/// Reads the `/events` parameters with Zulip's rules.
fn parse_op(req: &ApiRequest, delete: bool, user: &AuthedUser) -> Result<EventsOp, ApiResponse> {
    let err = |e: ApiError| ApiResponse::from(e);
    let mut p = Params::from_request(req).map_err(err)?;
    let queue = |q: String| QueueId::parse(&q).ok_or_else(|| err(bad_queue(&q)));
    if delete {
        return Ok(EventsOp::Delete { queue_id: queue(p.req_str("queue_id").map_err(err)?)? });
    }
    let client = p.str("client").unwrap_or_else(|| client_name_from_user_agent(req.header("user-agent")));
    let spec = Box::new(queue_spec(user, client, req.header("user-agent"), None, &mut p, false).map_err(err)?);
    let queue_id = p.str("queue_id");
    let last_event_id = p.int("last_event_id").map_err(err)?;
    let dont_block = p.bool("dont_block").map_err(err)?.unwrap_or(false);
    Ok(match queue_id {
        None => EventsOp::Create { dont_block, spec },
        Some(q) => {
            if last_event_id.is_none() {
                return Err(err(ApiError::bad_request("Missing 'last_event_id' argument")));
            }
            EventsOp::Poll { queue_id: queue(q)?, last_event_id, dont_block }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{header_slots, parse_head};

    fn fast(query: &str) -> Option<FastPoll> {
        let raw = format!("GET /api/v1/events?{query} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut slots = header_slots();
        let head = parse_head(raw.as_bytes(), &mut slots).unwrap().unwrap();
        FastPoll::read(&head)
    }

    #[test]
    fn the_common_poll_is_read_without_the_general_rules() {
        let q = "0-1-000000000000000000000000deadbeef";
        let id = QueueId::parse(q).unwrap();
        assert_eq!(
            fast(&format!("queue_id={q}&last_event_id=-1")),
            Some(FastPoll { queue_id: id, last_event_id: -1, dont_block: false })
        );
        assert_eq!(
            fast(&format!("last_event_id=12&dont_block=true&queue_id={q}")),
            Some(FastPoll { queue_id: id, last_event_id: 12, dont_block: true })
        );
        // Everything else takes the general path, which reports errors as Zulip does.
        for other in [
            format!("queue_id={q}"),
            format!("queue_id={q}&last_event_id=01"),
            format!("queue_id={q}&last_event_id=1.0"),
            format!("queue_id={q}&last_event_id=%2D1"),
            format!("queue_id={q}&last_event_id=1&dont_block=yes"),
            format!("queue_id={q}&last_event_id=1&apply_markdown=true"),
            format!("queue_id={q}&last_event_id=1&last_event_id=2"),
            "queue_id=nope&last_event_id=1".to_owned(),
            "dont_block=true".to_owned(),
        ] {
            assert_eq!(fast(&other), None, "{other}");
        }
    }
}
