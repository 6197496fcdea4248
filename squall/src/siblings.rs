//! Gateway processes of one host talking to each other over Unix sockets:
//! a client connection handed to the process that owns its queue (the
//! socket itself travels, as `SCM_RIGHTS`, with the bytes already read
//! from it; no byte of the client's traffic is proxied), and event notices
//! for the cores another process owns.
//!
//! Each process listens on `<dir>/gateway-<process>.sock`; a sender
//! connects to a sibling on first use and keeps the connection. A frame is
//! `kind (1) | core (2, LE) | length (4, LE) | payload`; a hand-off carries
//! the client's socket as ancillary data on the frame's first byte.

use squall_gateway::cores::{Cores, Peers};
use squall_proto::envelope::Notice;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HAND_OFF: u8 = 1;
const NOTICE: u8 = 2;
/// Largest frame payload accepted (a notice for a huge stream fits).
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Where process `process` listens.
pub fn socket_path(dir: &Path, process: u16) -> PathBuf {
    dir.join(format!("gateway-{process}.sock"))
}

/// The way from one process to its siblings.
pub struct Siblings {
    dir: PathBuf,
    cores_per_process: u16,
    links: Vec<Mutex<Option<UnixStream>>>,
}

impl Siblings {
    /// Links to the `processes` processes whose sockets are in `dir`.
    pub fn new(dir: &Path, processes: u16, cores_per_process: u16) -> Self {
        Siblings {
            dir: dir.to_path_buf(),
            cores_per_process: cores_per_process.max(1),
            links: (0..processes).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Sends one frame to the process owning `core`, connecting (again) if
    /// needed; the fd, if any, rides on the frame.
    fn send(&self, core: u16, kind: u8, payload: &[u8], fd: Option<RawFd>) -> Result<(), String> {
        let process = core / self.cores_per_process;
        let link = self.links.get(process as usize).ok_or_else(|| format!("no gateway process {process}"))?;
        let mut link = link.lock().unwrap_or_else(|p| p.into_inner());
        let mut head = [0u8; 7];
        head[0] = kind;
        head[1..3].copy_from_slice(&core.to_le_bytes());
        head[3..7].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        // A link broken by a sibling's restart is dialled once more.
        for attempt in 0..2 {
            if link.is_none() {
                let path = socket_path(&self.dir, process);
                *link = Some(UnixStream::connect(&path).map_err(|e| format!("connecting to {}: {e}", path.display()))?);
            }
            let Some(stream) = link.as_mut() else { continue };
            match send_frame(stream, &head, payload, fd) {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 0 => {
                    tracing::debug!(process, error = %e, "sibling link broken; reconnecting");
                    *link = None;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("gateway process {process} unreachable"))
    }
}

impl Peers for Siblings {
    fn hand_off(&self, core: u16, fd: OwnedFd, pending: Vec<u8>) -> Result<(), String> {
        // The fd is duplicated into the receiver by the kernel; ours closes
        // when `fd` drops after the send.
        self.send(core, HAND_OFF, &pending, Some(fd.as_raw_fd()))
    }

    fn deliver(&self, core: u16, notice: Notice) -> Result<(), String> {
        let payload = serde_json::to_vec(&notice).map_err(|e| e.to_string())?;
        self.send(core, NOTICE, &payload, None)
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
                if let Err(e) = cores.hand_off(core, fd, payload) {
                    tracing::warn!(core, error = ?e, "a connection handed over could not be taken; closed");
                }
            }
            (NOTICE, _) => match serde_json::from_slice::<Notice>(&payload) {
                Ok(notice) => deliver_waiting(cores, core, notice),
                Err(e) => tracing::warn!(error = %e, "a sibling sent an unreadable notice"),
            },
            (kind, _) => tracing::warn!(kind, "a sibling sent an unknown frame"),
        }
    }
}

/// Delivers to a local core, waiting while its inbox is full (this thread
/// only serves one sibling link; back-pressure reaches the sender).
fn deliver_waiting(cores: &Cores, core: u16, notice: Notice) {
    let Some(inbox) = cores.inbox(core) else {
        tracing::warn!(core, "a notice for a core this process does not own");
        return;
    };
    let mut item = squall_gateway::state::Item::Notice(notice);
    while let Err(back) = inbox.push(item) {
        item = back;
        std::thread::sleep(Duration::from_millis(1));
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
        let from_zero = Siblings::new(&dir, 2, 1);

        let (mine, theirs) = UnixStream::pair().unwrap();
        let pending = b"GET /api/v1/events HTTP/1.1\r\n\r\n".to_vec();
        from_zero.hand_off(1, OwnedFd::from(theirs), pending.clone()).unwrap();
        let notice = Notice::Generic { event: Arc::new(serde_json::json!({"type": "test"})), users: vec![3] };
        from_zero.deliver(1, notice).unwrap();
        let big = Notice::Generic { event: Arc::new(serde_json::json!({"x": "y".repeat(200_000)})), users: vec![4] };
        from_zero.deliver(1, big).unwrap();

        let mut items = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while items.len() < 3 && std::time::Instant::now() < deadline {
            match inbox.try_pop() {
                Some(i) => items.push(i),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        assert_eq!(items.len(), 3);
        let Item::Connection { fd, pending: got } = items.remove(0) else { panic!("a connection first") };
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
        assert!(
            from_zero.deliver(0, Notice::Generic { event: Arc::new(serde_json::json!({})), users: vec![] }).is_err(),
            "process 0 has no socket here"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
