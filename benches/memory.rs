//! Memory per remembered call: admits a million ended calls into a fresh state and reports the heap
//! bytes the state holds per counted call, measured with a counting allocator. Run with
//! `cargo bench --bench memory`; the target is under 100 bytes per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cec_exporter::cec::record::{CallId, CallRecord, CallState, TaskQuery};
use cec_exporter::cec::window::Window;
use cec_exporter::cec::wire::ParsedRecord;
use cec_exporter::ingest::ledger::{PollSummary, State};
use cec_exporter::ingest::plan::Read;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    const N: u64 = 1_000_000;
    let read = Read { query: TaskQuery::ITA, window: Window { start_ms: 0, end_ms: i64::MAX }, targeted: false };
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = State::default();
    let mut s = PollSummary::default();
    for i in 0..N {
        let rec = ParsedRecord {
            id: CallId(1_037_058_396_471_308_289 + i * 7),
            state: CallState::Ended,
            record: CallRecord {
                start_ms: Some(1_700_000_000_000 + i as i64),
                reason_code: Some(16),
                talk_s: Some(30.0),
                ..Default::default()
            },
            invalid: Default::default(),
        };
        state.admit(&rec, &read, &mut s);
    }
    // As after a poll's commit (the list of calls fresh since the last commit is gone).
    state.committed();
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(state.ledger.counted_len() as u64, N);
    println!(
        "remembered calls: {N}; state heap: {bytes} bytes; {:.1} bytes per remembered call",
        bytes as f64 / N as f64
    );
    // The same state committed to a store: its file size per remembered call.
    let dir = std::env::temp_dir().join(format!("cec-exporter-memory-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut store, _) = cec_exporter::store::Store::open(&dir, false).unwrap();
    // Re-admit nothing; commit the million as fresh calls, as a backfill's poll would.
    let fresh_state = {
        let mut st = cec_exporter::ingest::ledger::State::default();
        let mut sum = PollSummary::default();
        for i in 0..N {
            let rec = ParsedRecord {
                id: CallId(1_037_058_396_471_308_289 + i * 7),
                state: CallState::Ended,
                record: CallRecord { start_ms: Some(1_700_000_000_000 + i as i64), ..Default::default() },
                invalid: Default::default(),
            };
            st.admit(&rec, &read, &mut sum);
        }
        st
    };
    let t = std::time::Instant::now();
    store.commit(&fresh_state).unwrap();
    let first = t.elapsed();
    let mut state = fresh_state;
    state.committed();
    let t = std::time::Instant::now();
    store.commit(&state).unwrap();
    let steady = t.elapsed();
    let size = store.size().unwrap();
    println!(
        "state store: {size} bytes; {:.1} bytes per remembered call; committing a million new calls took {:?}, a commit with none new {:?}",
        size as f64 / N as f64,
        first,
        steady
    );
    drop(store);
    let t = std::time::Instant::now();
    let (_, restored) = cec_exporter::store::Store::open(&dir, false).unwrap();
    println!("restoring it took {:?}", t.elapsed());
    assert_eq!(restored.unwrap().ledger.counted_len() as u64, N);
    let _ = std::fs::remove_dir_all(&dir);
}
