//! The journal's files and the task that writes them.
//!
//! Each core keeps `<state_dir>/journal/core-<core>/`:
//! - `snapshot.<generation>`: every queue of the core at one moment, in the
//!   dump format of [`crate::persist::records`];
//! - `journal.<generation>`: the records made since that snapshot (and
//!   `journal.<g+1>`... for the ones made while a later snapshot was being
//!   written).
//!
//! Recovery loads the highest snapshot and replays the journal files of
//! its generation and later, in order. A snapshot is written to a
//! temporary name, synced and renamed, and only then are the older files
//! removed, so a crash at any point leaves a snapshot and the journal files
//! that follow it. A graceful stop writes the dump (which supersedes the
//! journal) and then removes the core's journal directory.

use super::{replay, Journal, JournalOptions, Signal, Stop, HEADER};
use crate::ctx::CoreCtx;
use crate::persist::{sync_dir, LoadedDump, Restorer};
use crate::state::CoreState;
use futures_channel::oneshot;
use serde_json::Value;
use squall_shard_router::placement::Topology;
use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The journal directory of `core`.
pub fn dir_of(state_dir: &Path, core: u16) -> PathBuf {
    state_dir.join("journal").join(format!("core-{core}"))
}

fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot.{generation:012}"))
}

/// Where a snapshot is written before it is renamed into place.
fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("journal.{generation:012}"))
}

/// Generations of the snapshots and journal files in `dir`, ascending.
fn list(dir: &Path) -> std::io::Result<(Vec<u64>, Vec<u64>)> {
    let (mut snapshots, mut journals) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let parsed = |prefix: &str| name.strip_prefix(prefix).and_then(|g| g.parse::<u64>().ok());
        if let Some(g) = parsed("snapshot.") {
            snapshots.push(g);
        } else if let Some(g) = parsed("journal.") {
            journals.push(g);
        }
    }
    snapshots.sort_unstable();
    journals.sort_unstable();
    Ok((snapshots, journals))
}

/// The core's journal, ready to be written: the file, and what the task
/// that writes it and the stopping core share.
pub struct Started {
    file: File,
    generation: u64,
    dir: PathBuf,
    signal: Rc<Signal>,
}

/// Restores the core's queues — from the dump a graceful stop left, else
/// from the snapshot and journal a crash left — then writes a fresh
/// snapshot, opens a new journal file and gives the core its journal. The
/// dump is moved aside only once the snapshot holds its queues. Returns how
/// many queues were restored, and the journal unless it could not be
/// started (said in the log; the core then runs without one).
pub fn start(
    state: &mut CoreState,
    state_dir: &Path,
    topo: Topology,
    restart_event: &Value,
    now: u64,
) -> (usize, Option<Started>) {
    let core = state.shard.core;
    let dir = dir_of(state_dir, core);
    let listed = std::fs::create_dir_all(&dir).and_then(|()| list(&dir));
    let (snapshots, journals) = match listed {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(core, dir = %dir.display(), error = %e, "cannot use the journal directory: running without a journal");
            return (state.load_queues(state_dir, topo, restart_event), None);
        }
    };
    let (restored, dump) = if LoadedDump::exists(state_dir, core, topo.cores) {
        state.restore_dump(state_dir, topo, restart_event)
    } else if !snapshots.is_empty() || !journals.is_empty() {
        (recover(state, &dir, &snapshots, &journals, topo, restart_event, now), None)
    } else {
        (0, None)
    };
    let generation = snapshots.iter().chain(&journals).max().map_or(1, |g| g + 1);
    let begun = snapshot_bytes(state)
        .and_then(|bytes| write_snapshot(&dir, generation, &bytes))
        .and_then(|()| create_journal(&dir, generation));
    let started = match begun {
        Ok(file) => {
            remove_older(&dir, generation);
            let signal = Rc::new(Signal::default());
            state.journal = Some(Journal::new(signal.clone(), HEADER.len() as u64));
            Some(Started { file, generation, dir, signal })
        }
        Err(e) => {
            tracing::error!(core, dir = %dir.display(), error = %e, "cannot start the queue journal: running without it");
            None
        }
    };
    if let Some(dump) = dump {
        dump.retire();
    }
    (restored, started)
}

/// Rebuilds the queues from the newest snapshot and the journal after it.
fn recover(
    state: &mut CoreState,
    dir: &Path,
    snapshots: &[u64],
    journals: &[u64],
    topo: Topology,
    restart_event: &Value,
    now: u64,
) -> usize {
    let core = state.shard.core;
    let mut restorer = Restorer::quiet(state, topo, restart_event);
    let base = snapshots.last().copied().unwrap_or(0);
    if let Some(&g) = snapshots.last() {
        let path = snapshot_path(dir, g);
        let outcome = File::open(&path)
            .map_err(|e| crate::persist::Damage(format!("cannot open: {e}")))
            .and_then(|f| crate::persist::records::read(BufReader::with_capacity(1 << 16, f), &mut restorer));
        if let Err(crate::persist::Damage(why)) = outcome {
            tracing::error!(core, path = %path.display(), damage = %why, "the journal's snapshot is damaged: restored the queues before the damage");
            keep_bad(&path);
        }
    }
    let (mut applied, mut skipped) = (0u64, 0u64);
    for &g in journals.iter().filter(|&&g| g >= base) {
        let path = journal_path(dir, g);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(core, path = %path.display(), error = %e, "cannot open a journal file; later ones are not replayed");
                break;
            }
        };
        match replay(BufReader::with_capacity(1 << 16, file), &mut restorer) {
            Ok(done) => {
                applied += done.records;
                skipped += done.skipped;
            }
            Err((done, stop)) => {
                applied += done.records;
                skipped += done.skipped;
                match stop {
                    Stop::Torn(why) => tracing::info!(
                        core,
                        path = %path.display(),
                        at = %why,
                        "the journal ends in a record cut short (the write the stop interrupted); replayed up to it"
                    ),
                    Stop::Damaged(crate::persist::Damage(why)) => {
                        tracing::error!(core, path = %path.display(), damage = %why, "the journal is damaged: replayed up to the last good record");
                        keep_bad(&path);
                    }
                }
                break;
            }
        }
    }
    restorer.greet_all(now);
    let restored = restorer.finish();
    tracing::warn!(
        core,
        restored,
        records = applied,
        skipped,
        "queues recovered from the journal after an unclean stop"
    );
    restored
}

/// Keeps a damaged file for inspection under `<name>.bad`.
fn keep_bad(path: &Path) {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    if let Err(e) = std::fs::rename(path, &bad) {
        tracing::warn!(path = %path.display(), error = %e, "cannot move a damaged journal file aside");
    }
}

/// The core's queues in the dump format.
fn snapshot_bytes(state: &CoreState) -> std::io::Result<Vec<u8>> {
    state.write_dump(Vec::with_capacity(1 << 16)).map(|(bytes, _)| bytes)
}

/// Writes a snapshot durably: temporary file, sync, rename, sync the
/// directory.
fn write_snapshot(dir: &Path, generation: u64, bytes: &[u8]) -> std::io::Result<()> {
    let path = snapshot_path(dir, generation);
    let tmp = tmp_path(&path);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)
}

/// Creates a journal file with its header, durably.
fn create_journal(dir: &Path, generation: u64) -> std::io::Result<File> {
    let mut f = File::options().write(true).create_new(true).open(journal_path(dir, generation))?;
    f.write_all(HEADER)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(f)
}

/// Removes snapshots and journal files older than `generation`, and
/// snapshots a crash left half-written (`*.tmp`) from before it.
fn remove_older(dir: &Path, generation: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Snapshots, journal files, and snapshots left half-written.
        let numbered = name.strip_prefix("snapshot.").map(|n| n.strip_suffix(".tmp").unwrap_or(n));
        let g = numbered.or_else(|| name.strip_prefix("journal.")).and_then(|n| n.parse::<u64>().ok());
        if g.is_some_and(|g| g < generation) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove an old journal file");
            }
        }
    }
}

/// What the stopping core uses to finish the journal.
pub struct Closing {
    signal: Rc<Signal>,
    closing: Rc<Cell<bool>>,
    snapshotting: Rc<Cell<bool>>,
    done: oneshot::Receiver<()>,
    dir: PathBuf,
}

impl Closing {
    /// Has the writer write and sync what is left, and waits for it (and
    /// for a snapshot being written). Bounded by `grace`.
    pub async fn finish(self, grace: std::time::Duration) -> Finished {
        self.closing.set(true);
        self.signal.notify();
        let deadline = std::time::Instant::now() + grace;
        let mut done = self.done;
        loop {
            let flushed = !matches!(done.try_recv(), Ok(None));
            if flushed && !self.snapshotting.get() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(dir = %self.dir.display(), "the journal was not finished in time");
                break;
            }
            monoio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Finished { dir: self.dir }
    }
}

/// A journal whose writer has stopped.
pub struct Finished {
    dir: PathBuf,
}

impl Finished {
    /// The dump now holds the queues: the journal is no longer needed.
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the journal after saving the queues");
        }
    }
}

/// Starts the task that writes the core's journal; returns what the core
/// needs to stop it.
pub fn spawn_writer(ctx: Rc<CoreCtx>, started: Started, opts: JournalOptions) -> Closing {
    let (tx, done) = oneshot::channel();
    let closing = Rc::new(Cell::new(false));
    let snapshotting = Rc::new(Cell::new(false));
    let handle = Closing {
        signal: started.signal.clone(),
        closing: closing.clone(),
        snapshotting: snapshotting.clone(),
        done,
        dir: started.dir.clone(),
    };
    let writer = Writer { ctx, started, opts, closing, snapshotting };
    monoio::spawn(async move {
        writer.run().await;
        let _ = tx.send(());
    });
    handle
}

struct Writer {
    ctx: Rc<CoreCtx>,
    started: Started,
    opts: JournalOptions,
    closing: Rc<Cell<bool>>,
    snapshotting: Rc<Cell<bool>>,
}

impl Writer {
    async fn run(self) {
        let Writer { ctx, started, opts, closing, snapshotting } = self;
        let Started { file, mut generation, dir, signal } = started;
        let core = ctx.shard.core;
        let mut file = match monoio::fs::File::from_std(file) {
            Ok(f) => f,
            Err(e) => return give_up(&ctx, &e),
        };
        let mut pos = HEADER.len() as u64;
        let mut last_snapshot = 0u64;
        loop {
            let stopping = closing.get();
            if !stopping {
                signal.wait().await;
                // Nobody waits for the disk: gather more records, up to the
                // flush interval or until someone does.
                let awaited = ctx.state.borrow().journal.as_ref().is_some_and(Journal::awaited);
                if !awaited && !closing.get() {
                    monoio::select! {
                        _ = monoio::time::sleep(opts.flush_interval) => {}
                        _ = signal.wait() => {}
                    }
                }
            }
            let batch = ctx.state.borrow_mut().journal.as_mut().and_then(Journal::take);
            match batch {
                Some(b) => {
                    if let Err(e) = timed_append(&ctx, &file, b.bytes, &mut pos).await {
                        return give_up(&ctx, &e);
                    }
                    if let Some(j) = ctx.state.borrow_mut().journal.as_mut() {
                        j.durable_upto(b.upto);
                    }
                }
                None if stopping => return,
                None => {}
            }
            let due = ctx
                .state
                .borrow()
                .journal
                .as_ref()
                .is_some_and(|j| j.file_bytes > opts.snapshot_bytes.max(last_snapshot));
            if !due || snapshotting.get() || closing.get() {
                continue;
            }
            // The snapshot is of this moment; what follows it goes to a new
            // file. What came before it is finished in the old one first.
            let (rest, made) = {
                let mut state = ctx.state.borrow_mut();
                let rest = state.journal.as_mut().and_then(Journal::take);
                let made = snapshot_bytes(&state);
                if made.is_ok() {
                    if let Some(j) = state.journal.as_mut() {
                        j.rotate(HEADER.len() as u64);
                    }
                }
                (rest, made)
            };
            if let Some(rest) = rest {
                if let Err(e) = timed_append(&ctx, &file, rest.bytes, &mut pos).await {
                    return give_up(&ctx, &e);
                }
                if let Some(j) = ctx.state.borrow_mut().journal.as_mut() {
                    j.durable_upto(rest.upto);
                }
            }
            let bytes = match made {
                Ok(b) => b,
                Err(e) => {
                    // The journal goes on in the same file; the next try
                    // waits until it has doubled.
                    tracing::error!(core, error = %e, "cannot make a journal snapshot");
                    last_snapshot = last_snapshot.max(opts.snapshot_bytes).saturating_mul(2);
                    continue;
                }
            };
            generation += 1;
            let next = match create_journal(&dir, generation).and_then(monoio::fs::File::from_std) {
                Ok(f) => f,
                Err(e) => return give_up(&ctx, &e),
            };
            file = next;
            pos = HEADER.len() as u64;
            last_snapshot = bytes.len() as u64;
            snapshotting.set(true);
            crate::stats::CoreStats::bump(&ctx.counters().journal_snapshots);
            let (dir, flag) = (dir.clone(), snapshotting.clone());
            monoio::spawn(async move {
                match write_snapshot_async(&dir, generation, bytes).await {
                    Ok(()) => remove_older(&dir, generation),
                    Err(e) => {
                        tracing::error!(core, error = %e, "cannot write a journal snapshot; the journal files stay")
                    }
                }
                flag.set(false);
            });
        }
    }
}

/// [`append`], counted in the core's metrics.
async fn timed_append(ctx: &CoreCtx, file: &monoio::fs::File, bytes: Vec<u8>, pos: &mut u64) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let len = bytes.len() as u64;
    append(file, bytes, pos).await?;
    let c = ctx.counters();
    c.journal_bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
    c.journal_syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c.journal_sync_us.fetch_add(started.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Writes and syncs `bytes` at `*pos` (io_uring when the core runs on it).
async fn append(file: &monoio::fs::File, bytes: Vec<u8>, pos: &mut u64) -> std::io::Result<()> {
    let len = bytes.len() as u64;
    let (written, _) = file.write_all_at(bytes, *pos).await;
    written?;
    file.sync_data().await?;
    *pos += len;
    Ok(())
}

/// [`write_snapshot`] with the data written and synced through the core's
/// driver.
async fn write_snapshot_async(dir: &Path, generation: u64, bytes: Vec<u8>) -> std::io::Result<()> {
    let path = snapshot_path(dir, generation);
    let tmp = tmp_path(&path);
    let file = monoio::fs::File::from_std(File::create(&tmp)?)?;
    let (written, _) = file.write_all_at(bytes, 0).await;
    written?;
    file.sync_all().await?;
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)
}

/// The journal cannot be written: the core goes on without it (as Zulip
/// always does), and says so.
fn give_up(ctx: &CoreCtx, e: &std::io::Error) {
    tracing::error!(
        core = ctx.shard.core,
        error = %e,
        "cannot write the queue journal: continuing without it (a crash now loses the queues; a graceful stop still saves them)"
    );
    if let Some(j) = ctx.state.borrow_mut().journal.take() {
        j.abandon();
    }
}
