//! One client connection: read → parse → route → write, with keep-alive.
//!
//! Routes: `/events` ([`crate::events`]), the event server's internal
//! endpoints ([`crate::internal`]), `/metrics`, and everything else to the
//! [`crate::backend::Backend`].
//!
//! The socket is split into a read half and a write half so that a read
//! can stay in flight while a response is written. A parked long-poll
//! waits on its [`Slot`] with one read pending: that read notices a client
//! that goes away, and when the answer comes it stays in flight and
//! receives the client's next poll. No read is ever cancelled on the event
//! path. The only buffer a connection holds is its input buffer, which the
//! pending read fills in place.
//!
//! While it waits for its client a connection has a deadline
//! ([`crate::guard`]); a large body is read only once the request's
//! credentials are known to be good.

use crate::cores::Moving;
use crate::ctx::CoreCtx;
use crate::events::{self, Outcome};
use crate::guard::{Phase, Watch};
use crate::http::parse::{header_slots, parse_head, parse_head_only, Head};
use crate::http::response;
use crate::park::{Answer, Slot};
use crate::state::Item;
use crate::stats::CoreStats;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use squall_proto::api::ApiResponse;
use squall_proto::error::ApiError;
use squall_proto::ids::QueueId;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

/// Room a read asks for: a long-poll request fits with margin.
const READ_ROOM: usize = 512;
/// An input buffer grown past this by a large request is not kept.
const INPUT_KEEP_MAX: usize = 16 * 1024;

/// Serves one connection until it closes or is handed to another core.
/// `pending` holds bytes already read from it (after a hand-off).
pub async fn serve(stream: TcpStream, ctx: Rc<CoreCtx>, pending: Vec<u8>) {
    CoreStats::add(&ctx.counters().connections, 1);
    let entry = ctx.watch.add(ctx.clock.now_ms(), false);
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let (rd, wr) = stream.into_split();
    let conn =
        Conn { rd, wr, input: pending, peer, slot: Slot::new(), watch: entry.watch.clone(), body_checked: false };
    conn.run(&ctx).await;
    ctx.watch.remove(entry);
    CoreStats::add(&ctx.counters().connections, -1);
}

/// Answers a connection there is no room for with a 503 and closes it.
pub async fn turn_away(mut stream: TcpStream) {
    let resp: ApiResponse = ApiError::busy("Too many connections; try again").into();
    let (_, _) = stream.write_all(response::to_bytes(&resp, false, false)).await;
}

/// Adopts a connection another core or process handed over. A stopping
/// core answers it with a 503 instead.
pub fn adopt(conn: Moving, ctx: &Rc<CoreCtx>) {
    if ctx.shutting_down.get() {
        refuse(conn, "The server is restarting; try again");
        return;
    }
    let Moving { fd, pending } = conn;
    let std = std::net::TcpStream::from(fd);
    // Sockets accepted by io_uring are blocking; every driver wants them not.
    let adopted = std.set_nonblocking(true).and_then(|()| TcpStream::from_std(std));
    match adopted {
        Ok(stream) => {
            monoio::spawn(serve(stream, ctx.clone(), pending));
        }
        Err(e) => tracing::warn!(error = %e, "could not adopt a handed-over connection"),
    }
}

/// Answers a connection that cannot be served with a 503 and closes it
/// (a short blocking write of a small response on a fresh socket).
fn refuse(conn: Moving, why: &str) {
    use std::io::Write;
    let mut std = std::net::TcpStream::from(conn.fd);
    let resp: ApiResponse = ApiError::busy(why).into();
    let _ = std.set_write_timeout(Some(std::time::Duration::from_millis(100)));
    let _ = std.write_all(&response::to_bytes(&resp, false, false));
}

struct Conn {
    rd: OwnedReadHalf<TcpStream>,
    wr: OwnedWriteHalf<TcpStream>,
    /// Bytes read and not yet handled.
    input: Vec<u8>,
    peer: Option<IpAddr>,
    /// Where a parked poll's answer arrives.
    slot: Rc<Slot>,
    /// Its deadlines (the core's sweeper closes it when one passes).
    watch: Rc<Watch>,
    /// The request being read has had its sender checked (large bodies).
    body_checked: bool,
}

/// What to do after handling the request at the front of the input.
enum Next {
    /// Write this and go on (or close if not kept alive).
    Reply(Reply),
    /// Wait for the answer of a poll parked on this queue.
    Park(QueueId),
    /// Give the connection to another core.
    HandOff(u16),
}

enum Reply {
    Events(Answer),
    Api(ApiResponse),
}

impl Conn {
    async fn run(mut self, ctx: &Rc<CoreCtx>) {
        loop {
            // The head borrows the input and a header array on the stack;
            // neither may live across an await, or every connection's task
            // would carry them. What has to wait comes out owned.
            let step = {
                let mut slots = header_slots();
                match parse_head(&self.input, &mut slots) {
                    Ok(Some(head)) => {
                        CoreStats::bump(&ctx.counters().requests);
                        let facts = (head.total_len(), head.keep_alive, head.is("HEAD"), Instant::now());
                        Some((route(&head, &self.input, self.peer, ctx, &self.slot), facts))
                    }
                    Ok(None) => None,
                    Err(invalid) => {
                        let facts = (0, false, false, Instant::now());
                        Some((Step::Now(Next::Reply(Reply::Api(invalid_response(invalid)))), facts))
                    }
                }
            };
            let Some((step, (used, keep_alive, head_only, started))) = step else {
                if let Some(refusal) = self.wait_phase(ctx).await {
                    self.write(Reply::Api(refusal), false, false).await;
                    return;
                }
                let watch = self.watch.clone();
                match watch.guard(self.fill()).await {
                    Some(Ok(n)) if n > 0 => continue,
                    // Closed, failed, or past its deadline.
                    _ => return,
                }
            };
            self.watch.enter(Phase::Busy, 0);
            ctx.watch.served(&self.watch);
            self.body_checked = false;
            let next = match step {
                Step::Now(next) => next,
                Step::Later(work) => {
                    CoreStats::add(&ctx.counters().in_flight, 1);
                    let next = Box::pin(work.finish(ctx, &self.slot)).await;
                    CoreStats::add(&ctx.counters().in_flight, -1);
                    next
                }
            };
            let keep_alive = keep_alive && !ctx.shutting_down.get();
            match next {
                Next::HandOff(core) => {
                    self.hand_off(core, ctx);
                    return;
                }
                Next::Reply(reply) => {
                    self.consume(used);
                    self.watch.enter(Phase::Idle, ctx.clock.now_ms());
                    let watch = self.watch.clone();
                    let written = watch.guard(self.write(reply, keep_alive, head_only)).await == Some(true);
                    ctx.counters().record_latency(started.elapsed());
                    if !written || !keep_alive {
                        return;
                    }
                }
                Next::Park(queue_id) => {
                    self.consume(used);
                    if !self.park(queue_id, keep_alive, head_only, ctx).await {
                        return;
                    }
                }
            }
        }
    }

    /// Drops a handled request from the input.
    fn consume(&mut self, used: usize) {
        self.input.drain(..used);
        if self.input.is_empty() && self.input.capacity() > INPUT_KEEP_MAX {
            self.input = Vec::new();
        }
    }

    /// Reads more input in place; returns the bytes read (0: closed).
    async fn fill(&mut self) -> std::io::Result<usize> {
        let (res, buf) = read_into(&mut self.rd, std::mem::take(&mut self.input)).await;
        self.input = buf;
        res
    }

    /// Waits for a parked poll's answer with a read in flight; writes the
    /// answer; collects what the read brings (the next poll). False when
    /// the connection is done.
    async fn park(&mut self, queue_id: QueueId, keep_alive: bool, head_only: bool, ctx: &CoreCtx) -> bool {
        let reading = read_into(&mut self.rd, std::mem::take(&mut self.input));
        let mut reading = std::pin::pin!(reading);
        // Whichever comes first: the answer, or something from the client.
        let slot = &self.slot;
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(a) = std::pin::pin!(slot.wait()).poll(cx) {
                return Poll::Ready(Ok(a));
            }
            reading.as_mut().poll(cx).map(Err)
        })
        .await;
        let answer = match first {
            Ok(answer) => answer,
            Err((res, buf)) => {
                self.input = buf;
                if !matches!(res, Ok(n) if n > 0) {
                    // The client left while parked.
                    self.slot.set_gone();
                    ctx.state.borrow_mut().disconnected(queue_id);
                    return false;
                }
                // A pipelined request: it waits until this poll is answered.
                let answer = self.slot.wait().await;
                return send(&mut self.wr, render(Reply::Events(answer), keep_alive, head_only)).await && keep_alive;
            }
        };
        // The read stays in flight while the answer is written: it receives
        // the client's next poll. The idle deadline counts from the answer.
        self.watch.enter(Phase::Idle, ctx.clock.now_ms());
        let sent = self.watch.guard(send(&mut self.wr, render(Reply::Events(answer), keep_alive, head_only))).await;
        if sent != Some(true) || !keep_alive {
            return false;
        }
        let Some((res, buf)) = self.watch.guard(reading.as_mut()).await else { return false };
        self.input = buf;
        matches!(res, Ok(n) if n > 0)
    }

    /// Sets the phase the connection waits in, by what the input holds. On
    /// entering a body longer than `auth_before_body`, checks the request's
    /// credentials first: the refusal to send if they are not good.
    async fn wait_phase(&mut self, ctx: &Rc<CoreCtx>) -> Option<ApiResponse> {
        let now = ctx.clock.now_ms();
        let phase = self.watch.phase();
        if self.input.is_empty() {
            // A fresh connection keeps the accept's deadline.
            if phase != Phase::Fresh {
                self.watch.enter(Phase::Idle, now);
            }
            return None;
        }
        if phase == Phase::Body {
            // The head was read (and checked) already; its body's deadline runs.
            return None;
        }
        let probe = {
            let mut slots = header_slots();
            match parse_head_only(&self.input, &mut slots) {
                // Unreadable headers give no probe: the parse after the
                // body says what is wrong.
                Ok(Some(head)) if !self.body_checked && head.body_len > ctx.watch.limits().auth_before_body => {
                    head.probe(self.peer).ok()
                }
                Ok(Some(_)) => None,
                _ => {
                    self.watch.enter(Phase::Head, now);
                    return None;
                }
            }
        };
        self.body_checked = true;
        if let Some(probe) = probe {
            self.watch.enter(Phase::Busy, 0);
            if let Err(refusal) = sender_may_send_body(probe, ctx).await {
                return Some(refusal);
            }
        }
        self.watch.enter(Phase::Body, ctx.clock.now_ms());
        None
    }

    async fn write(&mut self, reply: Reply, keep_alive: bool, head_only: bool) -> bool {
        write_reply(&mut self.wr, reply, keep_alive, head_only).await
    }

    /// Gives the socket and the unhandled input (the request that named
    /// `core`, and anything after it) to `core`.
    fn hand_off(self, core: u16, ctx: &CoreCtx) {
        let Conn { rd, wr, input, .. } = self;
        let Ok(stream) = rd.reunite(wr) else { return };
        // No operation is in flight here: the last read has completed.
        // SAFETY: into_raw_fd gives up ownership of an open socket.
        let fd = unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) };
        CoreStats::bump(&ctx.counters().handoffs);
        if let Err((e, conn)) = ctx.cores.hand_off(core, Moving { fd, pending: input }) {
            // Overloaded or unreachable: the client retries (its queue is
            // unaffected).
            tracing::warn!(core, error = %e, "a connection could not be handed over");
            refuse(conn, "Server is busy; try again");
        }
    }
}

/// Whether the sender of a request with a large body may send it: the
/// internal endpoints to the peers they answer (they check their secret),
/// everything else to good credentials (cached, or checked by the backend).
async fn sender_may_send_body(probe: squall_proto::api::ApiRequest, ctx: &Rc<CoreCtx>) -> Result<(), ApiResponse> {
    if probe.path.starts_with("/api/internal/") {
        let allowed = ctx.internal_remote || probe.peer.is_some_and(|p| p.is_loopback());
        return if allowed { Ok(()) } else { Err(ApiError::not_found().into()) };
    }
    let authorization = probe.header("authorization").unwrap_or("").as_bytes().to_vec();
    let host = probe.header("host").unwrap_or("").as_bytes().to_vec();
    if ctx.state.borrow().auth.get(&authorization, &host, Instant::now()).is_some() {
        return Ok(());
    }
    let generation = ctx.state.borrow().auth.generation();
    match ctx.backend.authenticate(probe).await {
        Ok(user) => {
            ctx.state.borrow_mut().auth.insert(&authorization, &host, user, Instant::now(), generation);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Handles what reached this core's inbox before now: a notice from a
/// request that has already returned must be in the queues before a poll
/// that came after it is answered, as it would be for a poll handed over
/// from another core.
fn drain_inbox(ctx: &Rc<CoreCtx>) {
    let Some(inbox) = ctx.cores.inbox(ctx.shard.core) else { return };
    let now_ms = ctx.clock.now_ms();
    while let Some(item) = inbox.try_pop() {
        let left = ctx.state.borrow_mut().handle(item, now_ms);
        match left {
            None => {}
            Some(Item::Connection(conn)) => adopt(conn, ctx),
            Some(_) => {
                // A stop: the core's loop sees the flag after its next item
                // (a wake-up, if there is room for one; else what fills the
                // inbox).
                ctx.stop_requested.set(true);
                let _ = inbox.push(Item::Wake);
                return;
            }
        }
    }
}

/// Reads into the spare room of `buf` (grown to [`READ_ROOM`] if needed),
/// returning it with the read's result.
async fn read_into(rd: &mut OwnedReadHalf<TcpStream>, mut buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < READ_ROOM / 2 {
        buf.reserve(READ_ROOM);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let (res, slice) = rd.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}

/// A reply as bytes to send (a pooled buffer) and where they start.
fn render(reply: Reply, keep_alive: bool, head_only: bool) -> (Vec<u8>, usize) {
    match reply {
        Reply::Events(mut a) => {
            let vary: &[(&str, &str)] = if a.deferred { &[("Vary", "Accept-Language, Cookie")] } else { &[] };
            if !head_only {
                if let Some(start) = response::head_into_room(&mut a.body, a.room, a.status, vary, keep_alive) {
                    return (a.body, start);
                }
            }
            let mut out = crate::pool::take();
            response::write_json(&mut out, a.status, vary, a.json(), keep_alive, head_only);
            crate::pool::give(a.body);
            (out, 0)
        }
        Reply::Api(r) => (response::to_bytes(&r, keep_alive, head_only), 0),
    }
}

/// Writes a reply; false if the connection failed. (Rendered before the
/// first await, so the future holds only the write.)
async fn write_reply(wr: &mut OwnedWriteHalf<TcpStream>, reply: Reply, keep_alive: bool, head_only: bool) -> bool {
    send(wr, render(reply, keep_alive, head_only)).await
}

async fn send(wr: &mut OwnedWriteHalf<TcpStream>, (out, start): (Vec<u8>, usize)) -> bool {
    let (res, out) = wr.write_all(out.slice(start..)).await;
    crate::pool::give(out.into_inner());
    res.is_ok()
}

/// A request handled at once, or work that has to wait (owned).
enum Step {
    Now(Next),
    Later(Later),
}

/// Work that waits: for the backend, or inside the gateway's internal
/// endpoints.
enum Later {
    Events(Box<events::Deferred>),
    /// `POST /register` with several gateway processes: served by the
    /// process that owns the user (which allocates the queue locally).
    Register(squall_proto::api::ApiRequest),
    Other {
        req: squall_proto::api::ApiRequest,
        internal: bool,
        metrics: bool,
    },
    Health,
}

impl Later {
    async fn finish(self, ctx: &Rc<CoreCtx>, slot: &Rc<Slot>) -> Next {
        match self {
            Later::Events(d) => next_of(events::finish_deferred(d, ctx, slot).await),
            Later::Register(req) => match events::owner_elsewhere(&req, ctx).await {
                Some(core) => Next::HandOff(core),
                None => Next::Reply(Reply::Api(ctx.backend.handle(req).await)),
            },
            Later::Other { req, internal: true, .. } => match crate::internal::owner_elsewhere(&req, ctx) {
                Some(core) => Next::HandOff(core),
                None => Next::Reply(Reply::Api(crate::internal::handle(&req, ctx).await)),
            },
            Later::Other { req, metrics: true, .. } => Next::Reply(Reply::Api(metrics(&req, ctx))),
            Later::Health => Next::Reply(Reply::Api(health(ctx))),
            Later::Other { req, .. } => Next::Reply(Reply::Api(ctx.backend.handle(req).await)),
        }
    }
}

fn next_of(o: Outcome) -> Next {
    match o {
        Outcome::Answer(a) => Next::Reply(Reply::Events(a)),
        Outcome::Response(r) => Next::Reply(Reply::Api(r)),
        Outcome::Parked(q) => Next::Park(q),
        Outcome::HandOff(core) => Next::HandOff(core),
    }
}

fn invalid_response(invalid: crate::http::parse::Invalid) -> ApiResponse {
    ApiError::new(invalid.0, "BAD_REQUEST", invalid.1).into()
}

/// Routes one request: `/events` on this core's state, or hands it over, or
/// defers it; everything else to the internal endpoints or the backend.
fn route(head: &Head<'_>, buf: &[u8], peer: Option<IpAddr>, ctx: &Rc<CoreCtx>, slot: &Rc<Slot>) -> Step {
    // Stopping: no new work may start (what is under way finishes before
    // the queues are saved).
    if ctx.shutting_down.get() {
        return Step::Now(Next::Reply(Reply::Api(ApiError::busy("The server is restarting; try again").into())));
    }
    let path = head.path.trim_end_matches('/');
    if events::is_events_path(path) {
        drain_inbox(ctx);
        return match events::handle(head, buf, peer, ctx, slot) {
            Ok(outcome) => Step::Now(next_of(outcome)),
            Err(deferred) => Step::Later(Later::Events(deferred)),
        };
    }
    if path == "/health" {
        return Step::Later(Later::Health);
    }
    let several_processes = ctx.cores.local().len() < ctx.topo.cores as usize;
    let register = (path == "/api/v1/register" || path == "/json/register") && head.is("POST");
    match head.to_api_request(buf, peer) {
        Ok(req) if register && several_processes => Step::Later(Later::Register(req)),
        Ok(req) => {
            Step::Later(Later::Other { req, internal: path.starts_with("/api/internal/"), metrics: path == "/metrics" })
        }
        Err(invalid) => Step::Now(Next::Reply(Reply::Api(invalid_response(invalid)))),
    }
}

/// `GET /health`: this process serves (for load balancers and checks).
fn health(ctx: &CoreCtx) -> ApiResponse {
    let local = ctx.cores.local();
    let t = ctx.stats.totals();
    let body = serde_json::json!({
        "status": if ctx.shutting_down.get() { "stopping" } else { "ok" },
        "process": local.start / (local.len().max(1) as u16),
        "cores": local.len(),
        "connections": t.connections,
        "queues": t.queues,
    });
    ApiResponse::json(if ctx.shutting_down.get() { 503 } else { 200 }, body.to_string())
}

/// `GET /metrics`: Prometheus text, for loopback peers only.
fn metrics(req: &squall_proto::api::ApiRequest, ctx: &CoreCtx) -> ApiResponse {
    if !req.peer.is_some_and(|p| p.is_loopback()) {
        return ApiError::not_found().into();
    }
    let mut text = ctx.stats.prometheus();
    {
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "# HELP squall_inbox_depth Items waiting in a core's inbox.\n# TYPE squall_inbox_depth gauge"
        );
        for core in ctx.cores.local() {
            if let Some(inbox) = ctx.cores.inbox(core) {
                let _ = writeln!(text, "squall_inbox_depth{{core=\"{core}\"}} {}", inbox.len());
            }
        }
    }
    let mut r = ApiResponse::json(200, text);
    r.headers.push(("Content-Type", "text/plain; version=0.0.4".into()));
    r
}
