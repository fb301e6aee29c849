//! Durable storage for a node: vnode state and node metadata in one embedded
//! [fjall](https://docs.rs/fjall) database under the node's data directory.
//!
//! Writes go through one writer thread that *groups* them: it takes every write
//! queued while the previous group was being written, commits them as one
//! batch, makes that batch durable, and only then runs the callbacks that
//! release the replies. So an acknowledged write has reached the operating
//! system (or the disk, with [`Durability::Sync`]) before anyone is told it
//! happened, at the cost of one system call per group instead of per write.
//!
//! Keys of vnode data are prefixed with the partition ordinal, so a vnode's
//! items can be loaded, folded for handoff and deleted as one range.
//! Left out: compaction tuning, checksummed backups, and multi-ring data
//! directories (a directory belongs to one ring size for life).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::ring::{PartitionId, RingSize};
use crate::{Error, Result};

/// How far a write has travelled before its reply is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to the operating system (survives `kill -9` of the process, not
    /// a machine crash or power loss).
    #[default]
    Process,
    /// Also `fdatasync`ed (survives a machine crash).
    Sync,
}

/// One staged change to a vnode's persisted items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
    /// Remove every item of the partition.
    DeleteAll,
    /// Set a node metadata value, in the same atomic batch as the
    /// partition's writes around it (the framework's records that must
    /// change together with a vnode's data: a sealed hint, a merged hint's
    /// id).
    PutMeta(String, Vec<u8>),
    /// Remove a node metadata value, atomically as [`Write::PutMeta`].
    DeleteMeta(String),
}

/// Runs once a group of writes is durable (or failed).
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

struct Job {
    partition: PartitionId,
    writes: Vec<Write>,
    done: Done,
}

const META_RING_SIZE: &[u8] = b"ring_size";
/// How many jobs one group may hold; bounds the latency of the first job.
const MAX_GROUP: usize = 4096;

/// Where a [`Store`]'s writes are committed.
#[derive(Clone)]
enum Committer {
    /// The writer thread, in groups.
    Thread(mpsc::Sender<Job>),
    /// On the caller's thread, one write at a time.
    Inline(Arc<Writer>),
}

/// The node's store: opened once per process, cloned cheaply.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    db: Database,
    vnodes: Keyspace,
    meta: Keyspace,
    committer: Committer,
    /// How far metadata writes go before returning, as for vnode writes.
    mode: PersistMode,
    /// Shared by this handle and its clones; see [`Store::close`].
    open: Arc<AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

fn storage_err(dir: &Path) -> impl Fn(fjall::Error) -> Error + '_ {
    move |e| Error::Storage {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` for a ring of `ring_size`.
    /// A directory made for another ring size is refused.
    pub fn open(dir: &Path, ring_size: RingSize, durability: Durability) -> Result<Store> {
        Store::open_as(dir, ring_size, durability, false)
    }

    /// [`Store::open`], but every write is committed on the caller's thread
    /// before [`Store::write`] returns, one at a time (no grouping, no writer
    /// thread). For simulations on a paused tokio clock: a write in flight on
    /// another thread would let the clock jump past it.
    pub fn open_inline(dir: &Path, ring_size: RingSize, durability: Durability) -> Result<Store> {
        Store::open_as(dir, ring_size, durability, true)
    }

    fn open_as(
        dir: &Path,
        ring_size: RingSize,
        durability: Durability,
        inline: bool,
    ) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: format!("creating data directory {}", dir.display()),
            source,
        })?;
        let err = storage_err(dir);
        // Small caches and memtables: a node's working set is a few counters
        // per vnode, an idle node should stay small, and a short journal keeps
        // recovery after a crash quick.
        let db = Database::builder(dir.join("store"))
            .cache_size(4 * 1024 * 1024)
            .max_journaling_size(64 * 1024 * 1024)
            .worker_threads(1)
            .manual_journal_persist(true)
            .open()
            .map_err(&err)?;
        let vnodes = db
            .keyspace("vnodes", || {
                KeyspaceCreateOptions::default().max_memtable_size(8 * 1024 * 1024)
            })
            .map_err(&err)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(&err)?;
        match meta.get(META_RING_SIZE).map_err(&err)? {
            Some(v) => {
                let stored = decode_u64(&v, "ring size")?;
                if stored != u64::from(ring_size.get()) {
                    return Err(Error::RingSizeMismatch {
                        dir: dir.to_path_buf(),
                        stored,
                        requested: u64::from(ring_size.get()),
                    });
                }
            }
            None => {
                meta.insert(META_RING_SIZE, u64::from(ring_size.get()).to_be_bytes())
                    .map_err(&err)?;
                db.persist(PersistMode::SyncAll).map_err(&err)?;
            }
        }
        let mode = match durability {
            Durability::Process => PersistMode::Buffer,
            Durability::Sync => PersistMode::SyncData,
        };
        let writer = Writer {
            dir: dir.to_path_buf(),
            db: db.clone(),
            vnodes: vnodes.clone(),
            meta: meta.clone(),
            mode,
        };
        let committer = if inline {
            Committer::Inline(Arc::new(writer))
        } else {
            let (jobs, rx) = mpsc::channel();
            thread::Builder::new()
                .name("flavio-store-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(|source| Error::Io {
                    context: "starting the store writer thread".into(),
                    source,
                })?;
            Committer::Thread(jobs)
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            db,
            vnodes,
            meta,
            committer,
            mode,
            open: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Closes this handle and every clone of it: from now on their reads and
    /// writes fail (`Error::ShuttingDown`), so a task that outlives its node
    /// (a request still running when the node stopped or crashed) cannot
    /// change what the node left on disk. Writes already queued to the writer
    /// thread still commit, as they would have reached the OS. Handles made
    /// by [`Store::reopen`] are not affected.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// A new handle on the same database, open whatever happened to this
    /// one: what a restarted node finds, holding every write that was
    /// committed before the close. The simulated cluster restarts crashed
    /// nodes with it (a real restart opens the directory again).
    pub fn reopen(&self) -> Store {
        Store {
            open: Arc::new(AtomicBool::new(true)),
            ..self.clone()
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.open.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::ShuttingDown)
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every persisted item of `partition`, keys without the partition prefix.
    pub fn load(&self, partition: PartitionId) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_open()?;
        let prefix = partition.0.to_be_bytes();
        let mut out = Vec::new();
        for guard in self.vnodes.prefix(prefix) {
            let (k, v) = guard.into_inner().map_err(storage_err(&self.dir))?;
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Queues `writes` for `partition`; `done` runs once they are durable.
    /// Writes of one caller are applied in the order they were queued.
    pub fn write(&self, partition: PartitionId, writes: Vec<Write>, done: Done) {
        if let Err(e) = self.check_open() {
            return done(Err(e));
        }
        let job = Job {
            partition,
            writes,
            done,
        };
        match &self.committer {
            Committer::Thread(jobs) => {
                if let Err(mpsc::SendError(job)) = jobs.send(job) {
                    (job.done)(Err(Error::ShuttingDown));
                }
            }
            Committer::Inline(writer) => writer.run_group(vec![job]),
        }
    }

    /// Reads a metadata value.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self
            .meta
            .get(key)
            .map_err(storage_err(&self.dir))?
            .map(|v| v.to_vec()))
    }

    /// Writes a metadata value, durable (as far as the store's
    /// [`Durability`] promises) before returning.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.check_open()?;
        let err = storage_err(&self.dir);
        self.meta.insert(key, value).map_err(&err)?;
        self.db.persist(self.mode).map_err(&err)
    }

    /// Removes a metadata value, durable as [`Store::put_meta`].
    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.check_open()?;
        let err = storage_err(&self.dir);
        self.meta.remove(key).map_err(&err)?;
        self.db.persist(self.mode).map_err(&err)
    }

    /// Every metadata entry whose key starts with `prefix`, in key order.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.check_open()?;
        let mut out = Vec::new();
        for guard in self.meta.prefix(prefix) {
            let (k, v) = guard.into_inner().map_err(storage_err(&self.dir))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// Whether any item of `partition` is stored (false once closed).
    pub fn has_data(&self, partition: PartitionId) -> bool {
        self.open.load(Ordering::SeqCst)
            && self
                .vnodes
                .prefix(partition.0.to_be_bytes())
                .next()
                .is_some()
    }

    /// Flushes everything to disk; called on graceful shutdown.
    pub fn sync(&self) -> Result<()> {
        self.check_open()?;
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(storage_err(&self.dir))
    }
}

struct Writer {
    dir: PathBuf,
    db: Database,
    vnodes: Keyspace,
    meta: Keyspace,
    mode: PersistMode,
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Job>) {
        let mut group: Vec<Job> = Vec::new();
        // Blocks for the first job of a group, then takes whatever else queued
        // up meanwhile: under load groups grow by themselves, idle adds no delay.
        while let Ok(first) = rx.recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.run_group(std::mem::take(&mut group));
        }
        // Every sender is gone: the node is stopping. Make it all durable.
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "final sync of the store failed");
        }
    }

    /// Commits `group` as one batch, then releases every job's reply.
    fn run_group(&self, group: Vec<Job>) {
        let result = self.commit(&group);
        for job in group {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::Storage {
                    dir: self.dir.clone(),
                    message: e.to_string(),
                }),
            };
            (job.done)(r);
        }
    }

    fn commit(&self, group: &[Job]) -> std::result::Result<(), fjall::Error> {
        let mut batch = self.db.batch();
        for job in group {
            let prefix = job.partition.0.to_be_bytes();
            for w in &job.writes {
                match w {
                    Write::Put(k, v) => batch.insert(&self.vnodes, prefixed(prefix, k), v.clone()),
                    Write::Delete(k) => batch.remove(&self.vnodes, prefixed(prefix, k)),
                    Write::PutMeta(k, v) => batch.insert(&self.meta, k.as_str(), v.clone()),
                    Write::DeleteMeta(k) => batch.remove(&self.meta, k.as_str()),
                    Write::DeleteAll => {
                        // Earlier writes of this group must be visible to the scan
                        // below, or a key put just before would survive the delete.
                        batch.commit()?;
                        batch = self.db.batch();
                        for guard in self.vnodes.prefix(prefix) {
                            batch.remove(&self.vnodes, guard.key()?);
                        }
                    }
                }
            }
        }
        batch.commit()?;
        // One flush (or fdatasync) for the whole group: this is the grouping.
        self.db.persist(self.mode)
    }
}

fn prefixed(prefix: [u8; 4], key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&prefix);
    k.extend_from_slice(key);
    k
}

/// Decodes a big-endian u64 written by this module or by an app.
pub fn decode_u64(bytes: &[u8], what: &str) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| Error::Corrupt {
        what: what.to_string(),
        message: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}
