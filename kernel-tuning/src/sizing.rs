//! The arithmetic: what a host needs for a target number of connections.
//!
//! Per connection, the gateway holds one socket: one file descriptor, one
//! `struct file` system-wide, and kernel socket memory (≈3 KiB idle; send
//! and receive buffers only while data is in flight). A client host opening
//! the connections needs one ephemeral port per connection per (source
//! address, server address, server port). io_uring rings cost ≈100 KiB of
//! pinned memory per core at Squall's 1024 entries.

/// File descriptors a gateway process needs besides its connections:
/// listeners, io_uring/epoll and eventfds per core, the database pool,
/// logs. Generous; the real count is well under 100.
pub const FD_RESERVE: u64 = 256;
/// Pinned memory per core for its io_uring rings (1024 SQEs × 64 B + 2048
/// CQEs × 16 B + index arrays ≈ 100 KiB, rounded up with headroom).
pub const URING_BYTES_PER_CORE: u64 = 256 * 1024;
/// Bytes of TCP buffer one connection may hold during a delivery burst
/// (one event response in flight).
pub const BURST_BYTES_PER_CONNECTION: u64 = 4096;

/// What the host should sustain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Long-poll connections held by the gateway.
    pub connections: u64,
    /// Gateway cores (one io_uring per core).
    pub cores: u64,
}

impl Target {
    /// Open files one gateway process needs to hold every connection.
    pub fn fds_per_process(&self) -> u64 {
        self.connections + FD_RESERVE
    }

    /// `RLIMIT_NOFILE` to configure: the need rounded up to a power of two
    /// (at least 65,536).
    pub fn nofile_limit(&self) -> u64 {
        self.fds_per_process().next_power_of_two().max(65_536)
    }

    /// `fs.nr_open` (the ceiling for `RLIMIT_NOFILE`): at least the limit.
    pub fn nr_open(&self) -> u64 {
        self.nofile_limit().max(1_048_576)
    }

    /// `fs.file-max`: the server's sockets plus a co-located load
    /// generator's, plus 65,536 for everything else on the host.
    pub fn file_max(&self) -> u64 {
        2 * self.connections + 65_536
    }

    /// Accept-queue length: a restart makes every client reconnect within a
    /// second or two; the queue must absorb that burst between accept
    /// batches. N/16, between 4,096 and 65,535.
    pub fn somaxconn(&self) -> u64 {
        (self.connections / 16).clamp(4096, 65_535)
    }

    /// Packets queued per CPU before the stack runs: fan-out bursts on
    /// loopback arrive faster than one softirq pass drains.
    pub fn netdev_max_backlog(&self) -> u64 {
        16_384
    }

    /// TCP buffer memory needed for a full fan-out burst, in bytes.
    pub fn burst_bytes(&self) -> u64 {
        self.connections * BURST_BYTES_PER_CONNECTION
    }

    /// `net.ipv4.tcp_mem` (pages): pressure starts at the burst size, the
    /// hard limit at twice that.
    pub fn tcp_mem(&self, page_size: u64) -> [u64; 3] {
        let pages = self.burst_bytes().div_ceil(page_size.max(1)).max(65_536);
        [pages / 2, pages, pages * 2]
    }

    /// Locked memory for the io_uring rings (only enforced before Linux 5.12).
    pub fn memlock_bytes(&self) -> u64 {
        self.cores.max(1) * URING_BYTES_PER_CORE + 1024 * 1024
    }

    /// Processes needed when each may hold `open_files` descriptors.
    pub fn processes_needed(&self, open_files: u64) -> u64 {
        let per = open_files.saturating_sub(FD_RESERVE).max(1);
        self.connections.div_ceil(per)
    }

    /// Source addresses a client host needs to open every connection to
    /// one server address and port, given `ports` ephemeral ports.
    pub fn source_addresses_needed(&self, ports: u64) -> u64 {
        self.connections.div_ceil(ports.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_million() {
        let t = Target { connections: 1_000_000, cores: 16 };
        assert_eq!(t.fds_per_process(), 1_000_256);
        assert_eq!(t.nofile_limit(), 1_048_576);
        assert_eq!(t.nr_open(), 1_048_576);
        assert_eq!(t.file_max(), 2_065_536);
        assert_eq!(t.somaxconn(), 62_500);
        assert_eq!(t.tcp_mem(4096), [500_000, 1_000_000, 2_000_000]);
        assert_eq!(t.memlock_bytes(), 16 * 256 * 1024 + 1024 * 1024);
        assert_eq!(t.source_addresses_needed(28_232), 36);
    }

    #[test]
    fn small_targets_keep_sane_floors() {
        let t = Target { connections: 1000, cores: 2 };
        assert_eq!(t.nofile_limit(), 65_536);
        assert_eq!(t.somaxconn(), 4096);
        assert_eq!(t.tcp_mem(4096)[1], 65_536);
    }

    #[test]
    fn processes_for_the_20000_file_limit() {
        let t = Target { connections: 100_000, cores: 2 };
        // 20,000 - 256 = 19,744 connections per process.
        assert_eq!(t.processes_needed(20_000), 6);
        assert_eq!(t.processes_needed(200_000), 1);
    }
}
