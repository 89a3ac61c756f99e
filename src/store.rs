//! The durable state in `--state.path`: one redb file holding the ledger (counted calls, open calls,
//! cursor and floor) and the aggregates. Each poll commits in one transaction, so a crash at any
//! instant leaves either the whole poll or none of it; on start the state is restored and polling
//! resumes from the cursor. The format is versioned: older formats are migrated on open, newer ones
//! refused, and an unreadable file stops start-up with a message naming it and the way out
//! (`--state.reset`, which moves it aside rather than deleting it). Every restored value is checked
//! before the exporter relies on it (a file is input like any other), the directory and the file are
//! created private to the user (0700/0600), and after a failed commit the state can be read back
//! ([`Store::reload`]) so that memory holds what the file does.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::cec::record::{CallId, CallState};
use crate::cec::wire::MAX_TIME_MS;
use crate::ingest::ledger::{Ledger, OpenCall, Scalars, State};
use crate::metrics::aggregate::Aggregates;

/// The store's file name inside `--state.path`.
pub const FILE: &str = "cec-exporter.redb";
/// The format this version writes. Format 1 stored histograms without their bucket bounds; format 2
/// stores them, so a later change of buckets is detected instead of silently mixing layouts.
pub const FORMAT: u32 = 2;

/// The bucket bounds every format-1 histogram was counted with (frozen: they are history).
const FORMAT_1_TALK_BOUNDS: &[f64] = &[5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 2700.0, 3600.0];
const FORMAT_1_DELAY_BOUNDS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0];

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Counted calls keyed by (latest start, serial), so forgetting those below the floor is a range delete.
const COUNTED: TableDefinition<(i64, u64), ()> = TableDefinition::new("counted");
const OPEN: TableDefinition<u64, &[u8]> = TableDefinition::new("open");

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: another cec-exporter has it open; give each exporter its own --state.path")]
    Locked { path: PathBuf },
    #[error(
        "state store {path} is unreadable ({detail}); it was left as it is. To start afresh, run once with \
         --state.reset: the file is moved aside (not deleted) and the exporter reads back --poll.backfill"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "state store {path} was written by a newer cec-exporter (format {found}; this version reads formats up \
         to {supported}); run that version, or start afresh with --state.reset"
    )]
    FutureFormat { path: PathBuf, found: u32, supported: u32 },
    #[error("state store {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("state store {path}: commit failed: {detail}")]
    Commit { path: PathBuf, detail: String },
}

impl StoreError {
    /// Whether a later attempt may succeed (a commit on a full or read-only disk may, once it is fixed).
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Commit { .. })
    }
}

/// The open store.
pub struct Store {
    path: PathBuf,
    /// `None` after a failed commit: redb refuses further writes after an I/O error until reopened.
    db: Option<Database>,
    /// Test hook: makes the next commit fail, before or after its transaction reached the file.
    #[cfg(test)]
    pub(crate) fail_next_commit: Option<FailPoint>,
    /// Test hook: makes the next [`Store::reload`] fail.
    #[cfg(test)]
    pub(crate) fail_next_reload: bool,
}

/// Where an injected commit failure happens (tests only).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailPoint {
    /// Nothing is written.
    BeforeWrite,
    /// The transaction is committed, then an error is reported (as an fsync error after the data
    /// reached the disk may be).
    AfterWrite,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("open", &self.db.is_some()).finish()
    }
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { path: path.to_owned(), detail: detail.to_string() }
}

/// Creates `dir` (and missing parents) readable by the owner only: the store holds call serial numbers.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates an empty store file readable and writable by the owner only, unless one exists (redb
/// initializes an empty file; left to itself it would create the file with the umask's mode, often 0644).
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes an existing `path` private again when group or others have any access to it (a directory or
/// file left by an older version, or made by hand): chmod to `private` (0700 or 0600) with one warning
/// naming the path and the old mode. A chmod that fails is a warning too, never fatal: the exporter
/// runs as before, and the operator is told.
#[cfg(unix)]
fn tighten(path: &Path, private: u32, what: &'static str) {
    tighten_with(path, private, what, |p, m| std::fs::set_permissions(p, m))
}

/// [`tighten`] with the chmod passed in, so a test can make it fail (this process may be root).
#[cfg(unix)]
fn tighten_with(
    path: &Path,
    private: u32,
    what: &'static str,
    chmod: impl FnOnce(&Path, std::fs::Permissions) -> std::io::Result<()>,
) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return };
    let old = meta.permissions().mode() & 0o7777;
    if old & 0o077 == 0 {
        return;
    }
    let (old_mode, new_mode) = (format!("{old:04o}"), format!("{private:04o}"));
    match chmod(path, std::fs::Permissions::from_mode(private)) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            old_mode,
            new_mode,
            "the state {what} was open to group or others; made it private"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            old_mode,
            error = %e,
            "the state {what} is open to group or others and could not be made private; chmod {new_mode} it"
        ),
    }
}

#[cfg(not(unix))]
fn tighten(_: &Path, _: u32, _: &'static str) {}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    create_private_file(path)
        .map_err(|e| StoreError::Io { path: path.to_owned(), detail: format!("cannot create the file: {e}") })?;
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            StoreError::Locked { path: path.to_owned() }
        }
        // redb reports a file that is not a redb database as invalid data: that is corruption.
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) if io.kind() != std::io::ErrorKind::InvalidData => {
            StoreError::Io { path: path.to_owned(), detail: format!("cannot open: {io}") }
        }
        other => corrupt(path, other),
    })
}

impl Store {
    /// Opens (or creates) the store in `dir`, creating `dir` when missing (mode 0700, the file 0600 on
    /// Unix; an existing directory or file open to group or others is made so, with a warning), and restores the state it holds (`None` for a new store), after checking every value in
    /// it ([`StoreError::Corrupt`] naming the file and the value otherwise). With `reset`, an existing
    /// file is first moved aside to `FILE.reset-<unix seconds>`.
    pub fn open(dir: &Path, reset: bool) -> Result<(Store, Option<State>), StoreError> {
        // Created here, when the store is opened, not while the flags are validated.
        create_private_dir(dir).map_err(|e| StoreError::Io {
            path: dir.to_owned(),
            detail: format!("cannot create the --state.path directory: {e}"),
        })?;
        tighten(dir, 0o700, "directory");
        let path = dir.join(FILE);
        if reset && path.exists() {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let aside = dir.join(format!("{FILE}.reset-{secs}"));
            std::fs::rename(&path, &aside)
                .map_err(|e| StoreError::Io { path: path.clone(), detail: format!("cannot move it aside: {e}") })?;
            tracing::warn!(moved_to = %aside.display(), "--state.reset: moved the state store aside; starting afresh");
        }
        tighten(&path, 0o600, "file");
        let db = open_db(&path)?;
        let (state, format) = match load(&db, &path)? {
            Some((state, format)) => (Some(state), format),
            None => (None, FORMAT),
        };
        if let (Some(state), true) = (&state, format < FORMAT) {
            // Written once, in the current format, in one transaction: a crash here leaves format `format`.
            rewrite(&db, state)
                .map_err(|e| StoreError::Io { path: path.clone(), detail: format!("cannot migrate: {e}") })?;
            tracing::info!(path = %path.display(), from = format, to = FORMAT, "migrated the state store");
        }
        let store = Store {
            path,
            db: Some(db),
            #[cfg(test)]
            fail_next_commit: None,
            #[cfg(test)]
            fail_next_reload: false,
        };
        Ok((store, state))
    }

    /// Reads the state back from the file (reopening it after a failed commit): what the store really
    /// holds, to replace the memory's view after a commit whose outcome is unknown. A new store reads as
    /// the default state. Errors are [`StoreError::Commit`], retryable like the commit that caused them.
    pub fn reload(&mut self) -> Result<State, StoreError> {
        let fail = |e: StoreError| StoreError::Commit {
            path: self.path.clone(),
            detail: format!("cannot read the state back after a failed commit: {e}"),
        };
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_reload) {
            return Err(fail(StoreError::Io { path: self.path.clone(), detail: "injected".into() }));
        }
        if self.db.is_none() {
            self.db = Some(open_db(&self.path).map_err(fail)?);
        }
        let db = self.db.as_ref().expect("opened above");
        Ok(load(db, &self.path).map_err(fail)?.map(|(state, _)| state).unwrap_or_default())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store file's size, bytes.
    pub fn size(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.len())
    }

    /// Commits a poll: the calls counted since the last commit, the removal of those below the floor,
    /// the open calls, the scalars and the aggregates, in one transaction.
    pub fn commit(&mut self, state: &State) -> Result<(), StoreError> {
        self.commit_with(state, write)
    }

    /// Commits the whole of `state`, replacing everything the file holds, in one transaction: after a
    /// failed commit whose state could not be read back, this makes the file hold exactly what memory
    /// does, whatever the failed transaction left.
    pub fn commit_whole(&mut self, state: &State) -> Result<(), StoreError> {
        self.commit_with(state, rewrite)
    }

    fn commit_with(&mut self, state: &State, write: fn(&Database, &State) -> DbResult<()>) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |detail: String| StoreError::Commit { path: path.clone(), detail };
        if self.db.is_none() {
            self.db = Some(open_db(&self.path).map_err(|e| fail(e.to_string()))?);
        }
        let db = self.db.as_ref().expect("opened above");
        #[cfg(test)]
        let result = match self.fail_next_commit.take() {
            Some(FailPoint::BeforeWrite) => Err(fail("injected failure before the write".into())),
            Some(FailPoint::AfterWrite) => write(db, state)
                .map_err(|e| fail(e.to_string()))
                .and_then(|()| Err(fail("injected failure after the write".into()))),
            None => write(db, state).map_err(|e| fail(e.to_string())),
        };
        #[cfg(not(test))]
        let result = write(db, state).map_err(|e| fail(e.to_string()));
        if result.is_err() {
            self.db = None;
        }
        result
    }
}

/// Rewrites every table from `state` (a migration), in one transaction.
fn rewrite(db: &Database, state: &State) -> DbResult<()> {
    let mut all = state.clone();
    all.ledger =
        Ledger::restore(std::iter::empty(), state.ledger.open_calls().map(|(id, o)| (*id, *o)), state.ledger.scalars());
    for (id, hi) in state.ledger.counted() {
        all.ledger.mark_fresh(id, hi);
    }
    write_with(db, &all, true)
}

/// Any redb failure, as text: the caller knows which file and what it was doing.
type DbResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn write(db: &Database, state: &State) -> DbResult<()> {
    write_with(db, state, false)
}

/// Writes a poll (or, with `replace`, the whole state over whatever the counted table held).
fn write_with(db: &Database, state: &State, replace: bool) -> DbResult<()> {
    let tx = db.begin_write()?;
    {
        let l = &state.ledger;
        let mut counted = tx.open_table(COUNTED)?;
        if replace {
            counted.retain(|_, _| false)?;
        }
        for &(id, hi) in l.fresh() {
            counted.insert((hi, id.0), ())?;
        }
        let floor = l.floor_ms();
        counted.retain_in(..(floor, 0u64), |_, _| false)?;
        let mut open = tx.open_table(OPEN)?;
        open.retain(|_, _| false)?;
        for (id, o) in l.open_calls() {
            open.insert(id.0, serde_json::to_vec(o)?.as_slice())?;
        }
        let mut meta = tx.open_table(META)?;
        meta.insert("format", FORMAT.to_le_bytes().as_slice())?;
        meta.insert("scalars", serde_json::to_vec(&l.scalars())?.as_slice())?;
        meta.insert("aggregates", serde_json::to_vec(&state.aggregates)?.as_slice())?;
    }
    tx.commit()?;
    Ok(())
}

/// Brings a format-`format` aggregates record to the current format.
fn migrate(format: u32, aggregates: &mut Aggregates) {
    if format < 2 {
        for h in aggregates.talk.iter_mut().chain(aggregates.agent_talk.iter_mut()) {
            h.bounds = FORMAT_1_TALK_BOUNDS.to_vec();
        }
        for h in aggregates.answer_delay.iter_mut().flatten() {
            h.bounds = FORMAT_1_DELAY_BOUNDS.to_vec();
        }
    }
}

/// The stored state and the format it was stored in; `None` for a new store.
fn load(db: &Database, path: &Path) -> Result<Option<(State, u32)>, StoreError> {
    let tx = db.begin_read().map_err(|e| corrupt(path, e))?;
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(corrupt(path, e)),
    };
    let get = |key: &str| -> Result<Vec<u8>, StoreError> {
        meta.get(key)
            .map_err(|e| corrupt(path, e))?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| corrupt(path, format!("no {key} record")))
    };
    let format_bytes = get("format")?;
    let format =
        u32::from_le_bytes(format_bytes.as_slice().try_into().map_err(|_| corrupt(path, "bad format record"))?);
    if format > FORMAT {
        return Err(StoreError::FutureFormat { path: path.to_owned(), found: format, supported: FORMAT });
    }
    let scalars: Scalars =
        serde_json::from_slice(&get("scalars")?).map_err(|e| corrupt(path, format!("scalars: {e}")))?;
    let mut aggregates: Aggregates =
        serde_json::from_slice(&get("aggregates")?).map_err(|e| corrupt(path, format!("aggregates: {e}")))?;
    migrate(format, &mut aggregates);
    let restarted = aggregates.conform_buckets();
    if !restarted.is_empty() {
        tracing::warn!(
            histograms = %restarted.join(","),
            "the histogram buckets changed since the state was written: these histograms start over"
        );
    }
    let restarted = aggregates.conform_values();
    if !restarted.is_empty() {
        tracing::warn!(
            path = %path.display(),
            histograms = %restarted.join(","),
            "the state held a histogram with a non-finite or inconsistent value (an older version stored an \
             absurd duration): these histograms start over"
        );
    }
    let counted_t = tx.open_table(COUNTED).map_err(|e| corrupt(path, e))?;
    let mut counted = Vec::new();
    for entry in counted_t.iter().map_err(|e| corrupt(path, e))? {
        let (k, _) = entry.map_err(|e| corrupt(path, e))?;
        let (hi, id) = k.value();
        counted.push((CallId(id), hi));
    }
    let open_t = tx.open_table(OPEN).map_err(|e| corrupt(path, e))?;
    let mut open = Vec::new();
    for entry in open_t.iter().map_err(|e| corrupt(path, e))? {
        let (k, v) = entry.map_err(|e| corrupt(path, e))?;
        let o: OpenCall = serde_json::from_slice(v.value()).map_err(|e| corrupt(path, format!("open call: {e}")))?;
        open.push((CallId(k.value()), o));
    }
    let state = State { ledger: Ledger::restore(counted, open, scalars), aggregates };
    validate(&state).map_err(|e| corrupt(path, e))?;
    Ok(Some((state, format)))
}

/// Checks what a restored state holds before anything indexes or renders it: the rest of the
/// exporter may then rely on open calls being open, times being dates, and the floor not lying
/// beyond the cursor. The error says which value is wrong.
fn validate(state: &State) -> Result<(), String> {
    let time = |what: &str, ms: i64| {
        if (0..=MAX_TIME_MS).contains(&ms) {
            Ok(())
        } else {
            Err(format!("{what} {ms} is not a time from 1970 to the year 9999"))
        }
    };
    let l = &state.ledger;
    let s = l.scalars();
    for (what, v) in
        [("cursor", s.cursor_ms), ("covered-from time", s.covered_from_ms), ("newest start", s.newest_start_ms)]
    {
        if let Some(ms) = v {
            time(what, ms)?;
        }
    }
    match s.cursor_ms {
        None if s.floor_ms != i64::MIN || s.covered_from_ms.is_some() => {
            return Err("a floor or covered-from time without a cursor".into());
        }
        None if l.counted_len() > 0 || l.open_calls().next().is_some() => {
            return Err("calls remembered without a cursor".into());
        }
        Some(cursor) if s.floor_ms > cursor => {
            return Err(format!("floor {} lies after the cursor {cursor}", s.floor_ms));
        }
        Some(cursor) if s.covered_from_ms.is_none_or(|c| c > cursor) => {
            return Err(format!("covered-from time {:?} is missing or after the cursor {cursor}", s.covered_from_ms));
        }
        _ => {}
    }
    for (id, hi) in l.counted() {
        time(&format!("counted call {id}: start"), hi)?;
    }
    for (id, o) in l.open_calls() {
        if !CallState::OPEN.contains(&o.state) {
            return Err(format!("open call {id}: state {} is not an open state", o.state as u8));
        }
        time(&format!("open call {id}: start"), o.lo_ms)?;
        time(&format!("open call {id}: start"), o.hi_ms)?;
        if o.lo_ms > o.hi_ms {
            return Err(format!("open call {id}: start range {}..{} is empty", o.lo_ms, o.hi_ms));
        }
    }
    let a = &state.aggregates;
    for ms in a.last_call_end_ms.iter().flatten() {
        time("last call end", *ms)?;
    }
    let histogram_exemplars = a.talk.iter().chain(&a.agent_talk).chain(a.answer_delay.iter().flatten());
    let exemplars = histogram_exemplars
        .flat_map(|h| h.exemplars.iter().flatten())
        .chain(a.end_reasons.iter().flat_map(|m| m.values().filter_map(|c| c.exemplar.as_ref())));
    for e in exemplars {
        if let Some(ms) = e.ts_ms {
            time(&format!("exemplar of call {}: end", e.call), ms)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cec::record::{CallState, TaskQuery};
    use crate::cec::wire::ParsedRecord;
    use crate::ingest::plan::plan;
    use crate::ingest::testing::{rec, CFG, RET, T0};

    fn poll(s: &mut State, now: i64, recs: Vec<ParsedRecord>) {
        let p = plan(&CFG, now, s.ledger.cursor_ms(), &[TaskQuery::ITA], s.ledger.open_spans(), |_| None);
        s.apply(&p, [(&p.reads[0], recs.as_slice())], now, RET);
    }

    #[test]
    fn a_committed_state_comes_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, restored) = Store::open(dir.path(), false).unwrap();
        assert!(restored.is_none(), "a new store");
        let mut s = State::default();
        poll(&mut s, T0, vec![rec(1, CallState::Ended, T0 - 1_000), rec(2, CallState::Talking, T0 - 500)]);
        store.commit(&s).unwrap();
        s.committed();
        poll(&mut s, T0 + 200_000, vec![rec(2, CallState::Ended, T0 - 500), rec(3, CallState::Ended, T0 + 190_000)]);
        store.commit(&s).unwrap();
        s.committed();
        drop(store);
        let (_, restored) = Store::open(dir.path(), false).unwrap();
        assert_eq!(restored.unwrap(), s);
        assert_eq!(s.ledger.counted_len(), 1, "calls 1 and 2 fell below the floor and were forgotten");
    }

    #[test]
    fn a_future_format_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        store.commit(&State::default()).unwrap();
        {
            let db = store.db.as_ref().unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert("format", 99u32.to_le_bytes().as_slice()).unwrap();
            tx.commit().unwrap();
        }
        drop(store);
        let err = Store::open(dir.path(), false).unwrap_err();
        let path = dir.path().join(FILE);
        assert_eq!(
            err.to_string(),
            format!(
                "state store {} was written by a newer cec-exporter (format 99; this version reads formats up to 2); run that version, or start afresh with --state.reset",
                path.display()
            )
        );
    }

    #[test]
    fn a_corrupt_file_is_named_kept_and_reset_only_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = Store::open(dir.path(), false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("state store {} is unreadable (", path.display())), "{msg}");
        assert!(msg.ends_with("it was left as it is. To start afresh, run once with --state.reset: the file is moved aside (not deleted) and the exporter reads back --poll.backfill"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 8192], "left as it is");
        let (_, restored) = Store::open(dir.path(), true).unwrap();
        assert!(restored.is_none());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("cec-exporter.redb.reset-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(dir.path().join(&aside[0])).unwrap(), vec![0x5a; 8192], "moved aside intact");
    }

    #[test]
    fn opening_creates_a_missing_state_directory_or_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        let (store, restored) = Store::open(&nested, false).unwrap();
        assert!(restored.is_none());
        assert_eq!(store.path(), nested.join(FILE));
        assert!(nested.join(FILE).is_file());
        // A file where the directory should be: the error names the flag and the path.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = Store::open(&blocker.join("state"), false).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(&err, StoreError::Io { path, .. } if *path == blocker.join("state")), "{err:?}");
        assert!(
            msg.starts_with(&format!(
                "state store {}: cannot create the --state.path directory: ",
                blocker.join("state").display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn a_second_process_on_the_same_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _) = Store::open(dir.path(), false).unwrap();
        let err = Store::open(dir.path(), false).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }

    /// A store holding one ended and one open call, then edited by `edit` inside one transaction, as a
    /// damaged or hand-made file would be; returns the error opening it gives, as text.
    fn open_edited(edit: impl FnOnce(&redb::WriteTransaction)) -> (tempfile::TempDir, Result<Option<State>, String>) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        let mut s = State::default();
        poll(&mut s, T0, vec![rec(1, CallState::Ended, T0 - 1_000), rec(2, CallState::Talking, T0 - 500)]);
        store.commit(&s).unwrap();
        {
            let tx = store.db.as_ref().unwrap().begin_write().unwrap();
            edit(&tx);
            tx.commit().unwrap();
        }
        drop(store);
        let r = Store::open(dir.path(), false).map(|(_, s)| s).map_err(|e| e.to_string());
        (dir, r)
    }

    fn unreadable(dir: &Path, detail: &str) -> String {
        format!(
            "state store {} is unreadable ({detail}); it was left as it is. To start afresh, run once with \
             --state.reset: the file is moved aside (not deleted) and the exporter reads back --poll.backfill",
            dir.join(FILE).display()
        )
    }

    fn put_open(tx: &redb::WriteTransaction, json: &str) {
        tx.open_table(OPEN).unwrap().insert(2, json.as_bytes()).unwrap();
    }

    fn put_scalars(tx: &redb::WriteTransaction, s: Scalars) {
        tx.open_table(META).unwrap().insert("scalars", serde_json::to_vec(&s).unwrap().as_slice()).unwrap();
    }

    #[test]
    fn a_restored_open_call_in_state_3_is_refused_naming_the_file() {
        let (dir, r) = open_edited(|tx| {
            let o = OpenCall {
                lo_ms: T0,
                hi_ms: T0,
                state: CallState::Ended,
                task_type: crate::cec::record::TaskType::ItaBidirectional,
                query: TaskQuery::ITA,
            };
            put_open(tx, &serde_json::to_string(&o).unwrap());
        });
        assert_eq!(r.unwrap_err(), unreadable(dir.path(), "open call 2: state 3 is not an open state"));
    }

    #[test]
    fn a_restored_enum_out_of_range_is_refused_naming_the_file() {
        let json = r#"{"lo_ms":1,"hi_ms":1,"state":"Talking","task_type":"Bogus","query":4}"#;
        let (dir, r) = open_edited(|tx| put_open(tx, json));
        let serde = serde_json::from_str::<OpenCall>(json).unwrap_err();
        assert_eq!(r.unwrap_err(), unreadable(dir.path(), &format!("open call: {serde}")));
        assert!(serde.to_string().starts_with("unknown variant `Bogus`"), "{serde}");
    }

    #[test]
    fn a_restored_cursor_after_the_year_9999_is_refused() {
        let bad = MAX_TIME_MS + 1;
        let (dir, r) = open_edited(|tx| {
            put_scalars(
                tx,
                Scalars { cursor_ms: Some(bad), floor_ms: T0, covered_from_ms: Some(T0), newest_start_ms: Some(T0) },
            )
        });
        assert_eq!(
            r.unwrap_err(),
            unreadable(dir.path(), "cursor 253402300800000 is not a time from 1970 to the year 9999")
        );
    }

    #[test]
    fn restored_floors_and_cursors_must_agree() {
        let sc = |cursor_ms, floor_ms, covered_from_ms| Scalars {
            cursor_ms,
            floor_ms,
            covered_from_ms,
            newest_start_ms: Some(T0 - 500),
        };
        let cases = [
            (sc(Some(T0), T0 + 1, Some(T0 - 10)), format!("floor {} lies after the cursor {T0}", T0 + 1)),
            (
                sc(Some(T0), T0 - 10, Some(T0 + 1)),
                format!("covered-from time Some({}) is missing or after the cursor {T0}", T0 + 1),
            ),
            (sc(None, T0 - 10, None), "a floor or covered-from time without a cursor".to_string()),
            (sc(None, i64::MIN, None), "calls remembered without a cursor".to_string()),
        ];
        for (scalars, detail) in cases {
            let (dir, r) = open_edited(|tx| put_scalars(tx, scalars));
            assert_eq!(r.unwrap_err(), unreadable(dir.path(), &detail));
        }
    }

    #[test]
    fn a_store_holding_a_null_histogram_sum_still_loads() {
        // What the old code stored after two records with `talkDuration: 1e308`: a sum of +Inf, as null.
        let (_dir, r) = open_edited(|tx| {
            let mut meta = tx.open_table(META).unwrap();
            let mut a: serde_json::Value =
                serde_json::from_slice(meta.get("aggregates").unwrap().unwrap().value()).unwrap();
            let ita = crate::cec::record::TaskType::ItaBidirectional.index();
            a["talk"][ita]["count"] = 2.into();
            a["talk"][ita]["buckets"][11] = 2.into();
            a["talk"][ita]["sum"] = serde_json::Value::Null;
            meta.insert("aggregates", serde_json::to_vec(&a).unwrap().as_slice()).unwrap();
        });
        let s = r.expect("loads").expect("a state");
        let ita = crate::cec::record::TaskType::ItaBidirectional.index();
        assert_eq!(
            s.aggregates.talk[ita],
            crate::metrics::aggregate::Histogram::new(crate::metrics::aggregate::TALK_BUCKETS),
            "that histogram starts over"
        );
        assert_eq!(s.aggregates.total_calls(), 1, "the call counted before is kept");
        assert_eq!(s.ledger.counted_len(), 1);
        assert_eq!(s.ledger.open_calls().count(), 1);
    }

    #[test]
    fn two_records_with_talk_duration_1e308_then_a_restart() {
        let body = format!(
            r#"{{"retCode":"0","result":{{"total":2,"callInfo":[
                {{"callSerialNo":"1","state":3,"startTime":{a},"talkDuration":1e308}},
                {{"callSerialNo":"2","state":3,"startTime":{b},"talkDuration":"1e308","agentTalkDuration":1e308}}]}}}}"#,
            a = T0 - 2_000,
            b = T0 - 1_000
        );
        let page = crate::cec::wire::parse_page(body.as_bytes()).unwrap();
        let recs: Vec<ParsedRecord> = page.records.into_iter().map(Result::unwrap).collect();
        assert!(recs.iter().all(|r| !r.invalid.is_empty()), "1e308 is an invalid field");
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        let mut s = State::default();
        poll(&mut s, T0, recs);
        store.commit(&s).unwrap();
        s.committed();
        drop(store);
        let (_, restored) = Store::open(dir.path(), false).expect("the state still loads");
        let restored = restored.unwrap();
        assert_eq!(restored, s);
        assert_eq!(restored.aggregates.total_calls(), 2, "both calls count");
        let ita = crate::cec::record::TaskType::ItaBidirectional.index();
        assert_eq!((restored.aggregates.talk[ita].count, restored.aggregates.talk[ita].sum), (0, 0.0));
    }

    #[cfg(unix)]
    #[test]
    fn the_state_directory_is_0700_and_the_store_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        let (_store, _) = Store::open(&nested, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&nested.join(FILE)), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_loose_directory_and_store_are_made_private_with_one_warning_each() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        drop(Store::open(&state, false).unwrap());
        let file = state.join(FILE);
        let chmod = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        // As an older version left them.
        chmod(&state, 0o755);
        chmod(&file, 0o644);
        let (opened, lines) = crate::logging::capture(tracing::Level::DEBUG, || Store::open(&state, false));
        opened.unwrap();
        assert_eq!((mode(&state), mode(&file)), (0o700, 0o600));
        assert_eq!(
            lines,
            [
                format!(
                    "level=warn msg=\"the state directory was open to group or others; made it private\" path={} old_mode=0755 new_mode=0700",
                    state.display()
                ),
                format!(
                    "level=warn msg=\"the state file was open to group or others; made it private\" path={} old_mode=0644 new_mode=0600",
                    file.display()
                ),
            ]
        );
        // Private already (or tighter than asked): left alone, nothing said.
        chmod(&file, 0o400);
        let (opened, lines) = crate::logging::capture(tracing::Level::DEBUG, || Store::open(&state, false));
        drop(opened);
        assert_eq!((mode(&state), mode(&file), lines.len()), (0o700, 0o400, 0), "{lines:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_chmod_that_fails_is_a_warning_not_an_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("loose");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        let refuse = |_: &Path, _| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let ((), lines) = crate::logging::capture(tracing::Level::DEBUG, || tighten_with(&file, 0o600, "file", refuse));
        assert_eq!(
            lines,
            [format!(
                "level=warn msg=\"the state file is open to group or others and could not be made private; chmod 0600 it\" path={} old_mode=0664 error=\"permission denied\"",
                file.display()
            )]
        );
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o664);
    }

    #[test]
    fn a_commit_failing_after_the_write_reads_back_what_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        let mut s = State::default();
        poll(&mut s, T0, vec![rec(1, CallState::Ended, T0 - 1_000)]);
        store.fail_next_commit = Some(FailPoint::AfterWrite);
        assert!(store.commit(&s).unwrap_err().retryable());
        s.committed();
        assert_eq!(store.reload().unwrap(), s, "the poll reached the file");
        let mut t = s.clone();
        poll(&mut t, T0 + 60_000, vec![rec(2, CallState::Ended, T0 + 50_000)]);
        store.fail_next_commit = Some(FailPoint::BeforeWrite);
        assert!(store.commit(&t).is_err());
        assert_eq!(store.reload().unwrap(), s, "this one did not");
    }

    #[test]
    fn which_unknown_reason_codes_have_a_series_survives_a_restart() {
        use crate::cec::record::{CallRecord, TaskType};
        use crate::metrics::aggregate::OTHER_REASON;
        let t = TaskType::ItaBidirectional;
        let ended = |code: u16| CallRecord { reason_code: Some(code), ..Default::default() };
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), false).unwrap();
        let mut s = State::default();
        // 32 unknown codes, counting down so that the kept ones are not simply the lowest.
        for code in (1000..1032u16).rev() {
            s.aggregates.observe(CallId(u64::from(code)), t, &ended(code));
        }
        s.aggregates.observe(CallId(1), t, &ended(500));
        assert_eq!(s.aggregates.folded(t), 1, "the 33rd unknown code folds");
        store.commit(&s).unwrap();
        drop(store);
        let (_, restored) = Store::open(dir.path(), false).unwrap();
        let mut r = restored.unwrap();
        assert_eq!(r, s);
        assert_eq!(r.aggregates.set_reason_cap(32), 0, "the restored codes fit the cap");
        // After the restart, the same codes count under their own series, and a new one still folds.
        r.aggregates.observe(CallId(2), t, &ended(1031));
        r.aggregates.observe(CallId(3), t, &ended(400));
        r.aggregates.observe(CallId(4), t, &ended(16));
        let reasons = &r.aggregates.end_reasons[t.index()];
        assert_eq!(reasons[&1031].count, 2);
        assert_eq!((reasons[&16].count, reasons[&OTHER_REASON].count), (1, 2));
        assert!(!reasons.contains_key(&400) && !reasons.contains_key(&500));
        assert_eq!(reasons.len(), 32 + 2);
    }

    /// The format-1 store kept in `tests/fixtures` (see its README for what it holds).
    fn format_1_copy() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-format-1").join(FILE);
        std::fs::copy(fixture, dir.path().join(FILE)).unwrap();
        dir
    }

    #[test]
    fn a_format_1_store_is_migrated_and_nothing_in_it_is_lost() {
        let dir = format_1_copy();
        let (store, restored) = Store::open(dir.path(), false).unwrap();
        let s = restored.expect("a state");
        let serial = |n: u64| CallId(1_037_058_396_471_308_289 + n);
        let mut counted: Vec<(CallId, i64)> = s.ledger.counted().collect();
        counted.sort();
        assert_eq!(counted, vec![(serial(1), T0 - 100_000), (serial(2), T0 - 90_000)]);
        let mut open: Vec<(CallId, CallState)> = s.ledger.open_calls().map(|(id, o)| (*id, o.state)).collect();
        open.sort();
        assert_eq!(open, vec![(serial(3), CallState::Talking), (serial(4), CallState::Calling)]);
        assert_eq!(
            s.ledger.scalars(),
            Scalars {
                cursor_ms: Some(T0),
                floor_ms: 1_799_999_690_000,
                covered_from_ms: Some(1_799_996_400_000),
                newest_start_ms: Some(1_799_999_990_000)
            }
        );
        let ita = crate::cec::record::TaskType::ItaBidirectional.index();
        use crate::metrics::classify::Outcome;
        assert_eq!(s.aggregates.calls[ita][Outcome::Answered.index()], 1);
        assert_eq!(s.aggregates.calls[ita][Outcome::Busy.index()], 1);
        assert_eq!((s.aggregates.talk[ita].count, s.aggregates.talk[ita].sum), (1, 56.0));
        assert_eq!(
            s.aggregates.talk[ita].bounds,
            crate::metrics::aggregate::TALK_BUCKETS,
            "histograms kept, with their bounds"
        );
        assert_eq!(s.aggregates.answer_delay[ita][0].count, 1);
        drop(store);
        // The migration was written: the file is now format 2 and reads back the same.
        let db = open_db(&dir.path().join(FILE)).unwrap();
        let (again, format) = load(&db, &dir.path().join(FILE)).unwrap().unwrap();
        assert_eq!((again, format), (s, FORMAT));
    }
}
