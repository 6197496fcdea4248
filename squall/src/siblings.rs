//! Gateway processes of one host talking to each other over Unix sockets:
//! a client connection handed to the process that owns its queue (the
//! socket itself travels, as `SCM_RIGHTS`, with the bytes already read
//! from it; no byte of the client's traffic is proxied), and event notices
//! for the cores another process owns, each acknowledged once it sits in
//! the owning core's inbox.
//!
//! Each process listens on `<dir>/gateway-<process>.sock`. Towards each
//! sibling one sender thread owns the connection and a bounded queue feeds
//! it, so nothing on a core's thread or the backend's ever waits on another
//! process: a full queue or a sibling that is away is an error at once. A
//! frame is `kind (1) | core (2, LE) | length (4, LE) | payload`; a hand-off
//! carries the client's socket as ancillary data on the frame's first
//! bytes; a notice is answered with an `ACK` frame (payload: empty, or the
//! error).

use futures_channel::oneshot;
use futures_util::future::BoxFuture;
use squall_gateway::cores::{Cores, Moving, Peers};
use squall_proto::envelope::Notice;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HAND_OFF: u8 = 1;
const NOTICE: u8 = 2;
const ACK: u8 = 3;
/// Largest frame payload accepted (a notice for a huge stream fits).
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// Frames waiting for one sibling's sender thread.
const QUEUE: usize = 4096;
/// How long a receiver waits for room in a full inbox before it refuses.
const INBOX_WAIT: Duration = Duration::from_secs(5);

/// Where process `process` listens.
pub fn socket_path(dir: &Path, process: u16) -> PathBuf {
    dir.join(format!("gateway-{process}.sock"))
}

/// A frame for a sibling, and who waits for its acknowledgement.
struct Outgoing {
    kind: u8,
    core: u16,
    payload: Vec<u8>,
    fd: Option<OwnedFd>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The way from one process to its siblings.
pub struct Siblings {
    cores_per_process: u16,
    links: Vec<Option<SyncSender<Outgoing>>>,
}

impl Siblings {
    /// Links from process `me` to the other `processes - 1` processes whose
    /// sockets are in `dir` (each with its sender thread).
    pub fn new(dir: &Path, me: u16, processes: u16, cores_per_process: u16) -> std::io::Result<Self> {
        let mut links = Vec::new();
        for process in 0..processes {
            if process == me {
                links.push(None);
                continue;
            }
            let (tx, rx) = sync_channel(QUEUE);
            let path = socket_path(dir, process);
            std::thread::Builder::new()
                .name(format!("squall-link-{process}"))
                .spawn(move || sender(process, &path, rx))?;
            links.push(Some(tx));
        }
        Ok(Siblings { cores_per_process: cores_per_process.max(1), links })
    }

    fn link(&self, core: u16) -> Result<&SyncSender<Outgoing>, String> {
        let process = core / self.cores_per_process;
        self.links.get(process as usize).and_then(Option::as_ref).ok_or_else(|| format!("no gateway process {process}"))
    }
}

impl Peers for Siblings {
    fn hand_off(&self, core: u16, conn: Moving) -> Result<(), (String, Moving)> {
        let link = match self.link(core) {
            Ok(l) => l,
            Err(e) => return Err((e, conn)),
        };
        let Moving { fd, pending } = conn;
        let frame = Outgoing { kind: HAND_OFF, core, payload: pending, fd: Some(fd), done: None };
        link.try_send(frame).map_err(|e| {
            let (why, back) = match e {
                TrySendError::Full(o) => ("full", o),
                TrySendError::Disconnected(o) => ("gone", o),
            };
            let conn = match back.fd {
                Some(fd) => Moving { fd, pending: back.payload },
                None => unreachable!("a hand-off frame carries its socket"),
            };
            (format!("link to core {core}'s process is {why}"), conn)
        })
    }

    fn deliver(&self, core: u16, notice: Notice) -> BoxFuture<'static, Result<(), String>> {
        let sent = self.link(core).and_then(|link| {
            let payload = serde_json::to_vec(&notice).map_err(|e| e.to_string())?;
            let (done, acked) = oneshot::channel();
            link.try_send(Outgoing { kind: NOTICE, core, payload, fd: None, done: Some(done) })
                .map_err(|e| format!("link to core {core}'s process: {e}"))?;
            Ok(acked)
        });
        Box::pin(async move {
            match sent {
                Ok(acked) => acked.await.unwrap_or_else(|_| Err(format!("core {core}'s process did not answer"))),
                Err(e) => Err(e),
            }
        })
    }
}

/// Sends one sibling's frames in order over a connection it (re)dials as
/// needed; waits for the acknowledgement of each notice.
fn sender(process: u16, path: &Path, frames: Receiver<Outgoing>) {
    let mut link: Option<UnixStream> = None;
    for frame in frames {
        let result = send_one(&mut link, path, &frame);
        if let Err(e) = &result {
            tracing::warn!(process, error = %e, "sending to a sibling gateway process failed");
            link = None;
        }
        if let Some(done) = frame.done {
            let _ = done.send(result);
        }
    }
}

fn send_one(link: &mut Option<UnixStream>, path: &Path, f: &Outgoing) -> Result<(), String> {
    if link.is_none() {
        let s = UnixStream::connect(path).map_err(|e| format!("connecting to {}: {e}", path.display()))?;
        // A sibling that stops answering must not hold this link for ever.
        let _ = s.set_read_timeout(Some(INBOX_WAIT * 2));
        *link = Some(s);
    }
    let stream = link.as_mut().ok_or("no link")?;
    let mut head = [0u8; 7];
    head[0] = f.kind;
    head[1..3].copy_from_slice(&f.core.to_le_bytes());
    head[3..7].copy_from_slice(&(f.payload.len() as u32).to_le_bytes());
    send_frame(stream, &head, &f.payload, f.fd.as_ref().map(|fd| fd.as_raw_fd())).map_err(|e| e.to_string())?;
    if f.kind != NOTICE {
        return Ok(());
    }
    let (ack, _) = recv_head(stream).map_err(|e| e.to_string())?.ok_or("the sibling hung up")?;
    let len = u32::from_le_bytes([ack[3], ack[4], ack[5], ack[6]]) as usize;
    if ack[0] != ACK || len > 64 * 1024 {
        return Err("the sibling answered something else".into());
    }
    let mut why = vec![0u8; len];
    stream.read_exact(&mut why).map_err(|e| e.to_string())?;
    if why.is_empty() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&why).into_owned())
    }
}

/// Writes a frame with `sendmsg`, the fd (if any) as `SCM_RIGHTS` on its
/// first bytes, then the rest of the payload.
fn send_frame(stream: &mut UnixStream, head: &[u8; 7], payload: &[u8], fd: Option<RawFd>) -> std::io::Result<()> {
    let first = payload.len().min(64 * 1024);
    let mut iov = [
        libc::iovec { iov_base: head.as_ptr() as *mut _, iov_len: head.len() },
        libc::iovec { iov_base: payload.as_ptr() as *mut _, iov_len: first },
    ];
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 2;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer is large enough for one fd.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        }
    }
    // SAFETY: a connected socket and a message built above.
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // The ancillary data went with the first bytes; the rest is plain.
    let sent_payload = n.saturating_sub(head.len());
    if n < head.len() {
        stream.write_all(&head[n..])?;
    }
    stream.write_all(&payload[sent_payload.min(payload.len())..])
}

/// Listens for this process's siblings and feeds what they send into
/// `cores`, on threads of its own.
pub fn listen(dir: &Path, process: u16, cores: Arc<Cores>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = socket_path(dir, process);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::thread::Builder::new().name("squall-siblings".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    let cores = cores.clone();
                    let _ = std::thread::Builder::new().name("squall-sibling".into()).spawn(move || receive(s, &cores));
                }
                Err(e) => tracing::warn!(error = %e, "accepting a sibling gateway process failed"),
            }
        }
    })?;
    Ok(())
}

/// Reads frames from one sibling until it hangs up.
fn receive(mut stream: UnixStream, cores: &Cores) {
    loop {
        let (head, fd) = match recv_head(&stream) {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading from a sibling gateway process failed");
                return;
            }
        };
        let core = u16::from_le_bytes([head[1], head[2]]);
        let len = u32::from_le_bytes([head[3], head[4], head[5], head[6]]) as usize;
        if len > MAX_FRAME {
            tracing::warn!(len, "a sibling sent an oversized frame; dropping the link");
            return;
        }
        let mut payload = vec![0u8; len];
        if let Err(e) = stream.read_exact(&mut payload) {
            tracing::warn!(error = %e, "a sibling's frame was cut short");
            return;
        }
        match (head[0], fd) {
            (HAND_OFF, Some(fd)) => {
                // Only this process's own cores: a frame is never passed on.
                match cores.inbox(core) {
                    Some(inbox) => {
                        if inbox.push(squall_gateway::state::Item::Connection(Moving { fd, pending: payload })).is_err()
                        {
                            tracing::warn!(core, "inbox full: a connection handed over was closed");
                        }
                    }
                    None => tracing::warn!(core, "a connection for a core this process does not own was closed"),
                }
            }
            (NOTICE, _) => {
                let outcome = match serde_json::from_slice::<Notice>(&payload) {
                    Ok(notice) => deliver_waiting(cores, core, notice),
                    Err(e) => Err(format!("unreadable notice: {e}")),
                };
                let why = outcome.err().unwrap_or_default().into_bytes();
                let mut ack = [0u8; 7];
                ack[0] = ACK;
                ack[3..7].copy_from_slice(&(why.len() as u32).to_le_bytes());
                if stream.write_all(&ack).and_then(|()| stream.write_all(&why)).is_err() {
                    return;
                }
            }
            (kind, _) => {
                tracing::warn!(kind, "a sibling sent an unknown frame; dropping the link");
                return;
            }
        }
    }
}

/// Delivers to a local core, waiting a bounded time while its inbox is full
/// (back-pressure reaches the sender through the missing acknowledgement),
/// then until the core's journal holds what the notice did, so that the
/// sibling acknowledges a request only once its events would survive a
/// crash here too.
fn deliver_waiting(cores: &Cores, core: u16, notice: Notice) -> Result<(), String> {
    let inbox = cores.inbox(core).ok_or_else(|| format!("core {core} is not this process's"))?;
    let deadline = Instant::now() + INBOX_WAIT;
    push_waiting(inbox, squall_gateway::state::Item::Notice(notice), deadline)
        .map_err(|()| format!("core {core}'s inbox stayed full"))?;
    let (durable, on_disk) = futures_channel::oneshot::channel();
    if push_waiting(inbox, squall_gateway::state::Item::Durable(durable), deadline).is_ok()
        && !wait_blocking(on_disk, deadline)
    {
        tracing::warn!(core, "a core's journal did not confirm an event in time");
    }
    Ok(())
}

/// Pushes `item`, retrying while the inbox is full until `deadline`.
fn push_waiting(
    inbox: &squall_gateway::inbox::Inbox,
    mut item: squall_gateway::state::Item,
    deadline: Instant,
) -> Result<(), ()> {
    loop {
        match inbox.push(item) {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() > deadline => return Err(()),
            Err(back) => {
                item = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Waits on this (plain) thread for `rx` until `deadline`; whether it was
/// answered (a core that stopped meanwhile counts: it saved its queues).
/// The thread sleeps until the core's answer wakes it.
fn wait_blocking(mut rx: futures_channel::oneshot::Receiver<()>, deadline: Instant) -> bool {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if std::future::Future::poll(std::pin::Pin::new(&mut rx), &mut cx).is_ready() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// Reads a frame head with `recvmsg`, taking a passed fd if there is one.
/// `Ok(None)` at end of stream.
fn recv_head(stream: &UnixStream) -> std::io::Result<Option<([u8; 7], Option<OwnedFd>)>> {
    let mut head = [0u8; 7];
    let mut got = 0usize;
    let mut fd = None;
    while got < head.len() {
        let mut iov = libc::iovec { iov_base: head[got..].as_mut_ptr().cast(), iov_len: head.len() - got };
        let mut control = [0u64; 4];
        // SAFETY: msghdr is plain data; its pointers outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: a connected socket and a message built above.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        got += n as usize;
        // SAFETY: walking the control messages the kernel wrote.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
                    fd = Some(OwnedFd::from_raw_fd(raw));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
    }
    Ok(Some((head, fd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_gateway::inbox::Inbox;
    use squall_gateway::state::Item;

    #[test]
    fn sockets_and_notices_reach_the_owning_process() {
        let dir = std::env::temp_dir().join(format!("squall-siblings-{}", rand::random::<u64>()));
        // Process 1 of 2, one core each: it owns core 1.
        let inbox = Arc::new(Inbox::new(16));
        let cores = Arc::new(Cores::new(1, vec![inbox.clone()], None));
        listen(&dir, 1, cores).unwrap();
        let from_zero = Siblings::new(&dir, 0, 2, 1).unwrap();
        let block_on = |f: BoxFuture<'static, Result<(), String>>| {
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
        };

        // The receiving core: answers each durability request (as its
        // journal would once the notice is on disk) and keeps the rest.
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let confirmed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let core = {
            let (inbox, kept, confirmed, done) = (inbox.clone(), kept.clone(), confirmed.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    while let Some(item) = inbox.try_pop() {
                        match item {
                            Item::Durable(tx) => {
                                confirmed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let _ = tx.send(());
                            }
                            other => kept.lock().unwrap().push(other),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };

        let (mine, theirs) = UnixStream::pair().unwrap();
        let pending = b"GET /api/v1/events HTTP/1.1\r\n\r\n".to_vec();
        assert!(from_zero.hand_off(1, Moving { fd: OwnedFd::from(theirs), pending: pending.clone() }).is_ok());
        let notice = Notice::Generic { event: Arc::new(serde_json::json!({"type": "test"})), users: vec![3] };
        block_on(from_zero.deliver(1, notice)).unwrap();
        assert_eq!(confirmed.load(std::sync::atomic::Ordering::SeqCst), 1, "acknowledged once on disk");
        let big = Notice::Generic { event: Arc::new(serde_json::json!({"x": "y".repeat(200_000)})), users: vec![4] };
        block_on(from_zero.deliver(1, big)).unwrap();
        assert_eq!(confirmed.load(std::sync::atomic::Ordering::SeqCst), 2);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        core.join().unwrap();

        // Acknowledged: both notices are in the inbox now, after the socket.
        let mut items: Vec<Item> = std::mem::take(&mut *kept.lock().unwrap());
        assert_eq!(items.len(), 3);
        let Item::Connection(Moving { fd, pending: got }) = items.remove(0) else { panic!("a connection first") };
        assert_eq!(got, pending);
        // The socket that arrived is the one sent: what goes in one end comes out the other.
        let mut passed = UnixStream::from(fd);
        let mut mine = mine;
        mine.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        passed.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        assert!(matches!(items.remove(0), Item::Notice(Notice::Generic { users, .. }) if users == vec![3]));
        assert!(matches!(items.remove(0), Item::Notice(Notice::Generic { users, .. }) if users == vec![4]));

        // A core the receiver does not own: refused, and the sender hears of it.
        let stray = Notice::Generic { event: Arc::new(serde_json::json!({})), users: vec![] };
        let err = block_on(from_zero.deliver(3, stray)).unwrap_err();
        assert!(err.contains("no gateway process"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
