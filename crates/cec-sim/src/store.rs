//! The simulator's call store: every call (scripted or generated) indexed by start time, the
//! lazy pull from the random generator, window selection with the vendor's undocumented but
//! observed behaviour (select on startTime, inclusive ends, stable pseudo-random order), and the
//! truth over the stored calls.

use std::collections::{BTreeMap, HashSet};

use super::generator::Generator;
use super::model::{mix, CallSpec, SpecError, TASK_ITA_BIDIRECTIONAL};
use super::truth::{Truth, TruthBuilder};

/// Salt of the order key, so the order is unrelated to the other per-record coin flips.
const ORDER_SALT: u64 = 0x0DE5;

/// Which task types a query asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskFilter {
    /// taskType absent or "0": every type except ITA.
    AllButIta,
    /// taskType "1".."4".
    Only(u8),
}

impl TaskFilter {
    fn accepts(self, task_type: u8) -> bool {
        match self {
            TaskFilter::AllButIta => task_type != TASK_ITA_BIDIRECTIONAL,
            TaskFilter::Only(t) => task_type == t,
        }
    }
}

/// A validated query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Selection {
    pub start_ms: i64,
    pub end_ms: i64,
    pub tasks: TaskFilter,
    pub caller: Option<String>,
    pub offset: u64,
    pub limit: u64,
}

/// One page of a query.
#[derive(Debug)]
pub(crate) struct Page {
    /// Records matching the window and filters (all pages).
    pub total: u64,
    /// The records on this page, in the served order.
    pub calls: Vec<CallSpec>,
}

#[derive(Debug)]
pub(crate) struct Store {
    seed: u64,
    /// Keyed by (start, serial): windows select on start, so a range scan finds them.
    calls: BTreeMap<(i64, u64), CallSpec>,
    serials: HashSet<u64>,
    generator: Option<Generator>,
}

impl Store {
    pub(crate) fn new(seed: u64, generator: Option<Generator>) -> Self {
        Self { seed, calls: BTreeMap::new(), serials: HashSet::new(), generator }
    }

    /// Pulls every generated call that has started by `now_ms`. A generated serial that a
    /// scripted call already took is dropped: scripted calls are what tests assert on.
    pub(crate) fn advance(&mut self, now_ms: i64) {
        let Some(g) = self.generator.as_mut() else {
            return;
        };
        for c in g.drain_until(now_ms) {
            if self.serials.insert(c.serial) {
                self.calls.insert((c.start_ms, c.serial), c);
            }
        }
    }

    /// Adds scripted calls: all or none (every spec valid, no serial repeated or already stored).
    pub(crate) fn add(&mut self, calls: Vec<CallSpec>) -> Result<usize, SpecError> {
        let mut fresh = HashSet::new();
        for c in &calls {
            c.validate()?;
            if self.serials.contains(&c.serial) || !fresh.insert(c.serial) {
                return Err(SpecError::Duplicate(c.serial));
            }
        }
        let n = calls.len();
        for c in calls {
            self.serials.insert(c.serial);
            self.calls.insert((c.start_ms, c.serial), c);
        }
        Ok(n)
    }

    /// Number of stored calls (visible or not).
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// The page a query at `now_ms` gets. Records are ordered by a hash of serial and seed: stable
    /// while nothing changes, but a record turning visible lands anywhere, shifting offsets.
    pub(crate) fn select(&self, now_ms: i64, q: &Selection) -> Page {
        if q.end_ms < q.start_ms {
            // BTreeMap::range panics on a reversed range; validation already refuses these.
            return Page { total: 0, calls: Vec::new() };
        }
        let mut hits: Vec<(u64, &CallSpec)> = self
            .calls
            .range((q.start_ms, u64::MIN)..=(q.end_ms, u64::MAX))
            .map(|(_, c)| c)
            .filter(|c| q.tasks.accepts(c.task_type))
            .filter(|c| q.caller.as_deref().is_none_or(|want| want == c.caller))
            .filter(|c| c.visible_state(now_ms).is_some())
            .map(|c| (mix(self.seed, c.serial, ORDER_SALT), c))
            .collect();
        let total = hits.len() as u64;
        let skip = usize::try_from(q.offset).unwrap_or(usize::MAX);
        if skip >= hits.len() {
            return Page { total, calls: Vec::new() };
        }
        let take = usize::try_from(q.limit).unwrap_or(usize::MAX).min(hits.len() - skip);
        // A backfill pages through windows of many thousand records: partition around the page
        // (linear) instead of sorting the whole window for every page.
        let key = |&(k, c): &(u64, &CallSpec)| (k, c.serial);
        if skip > 0 {
            hits.select_nth_unstable_by_key(skip, key);
        }
        let rest = &mut hits[skip..];
        if take < rest.len() {
            rest.select_nth_unstable_by_key(take, key);
        }
        let page = &mut rest[..take];
        page.sort_unstable_by_key(key);
        let calls = page.iter().map(|(_, c)| (*c).clone()).collect();
        Page { total, calls }
    }

    /// Truth over calls with start ≥ `since_ms` (all when `None`) as seen at `now_ms`.
    pub(crate) fn truth(&self, now_ms: i64, since_ms: Option<i64>) -> Truth {
        let mut b = TruthBuilder::default();
        let from = (since_ms.unwrap_or(i64::MIN), u64::MIN);
        for c in self.calls.range(from..).map(|(_, c)| c) {
            b.add(c, now_ms);
        }
        b.finish(now_ms, since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{task_type_label, SERIAL_BASE};
    use crate::testing::T0;

    fn sel(start_ms: i64, end_ms: i64, tasks: TaskFilter, offset: u64, limit: u64) -> Selection {
        Selection { start_ms, end_ms, tasks, caller: None, offset, limit }
    }

    fn serials(p: &Page) -> Vec<u64> {
        p.calls.iter().map(|c| c.serial).collect()
    }

    #[test]
    fn window_is_on_start_and_inclusive() {
        let mut s = Store::new(1, None);
        s.add(vec![
            CallSpec::builder(SERIAL_BASE, 1, T0 - 1).build(),
            CallSpec::builder(SERIAL_BASE + 1, 1, T0).build(),
            CallSpec::builder(SERIAL_BASE + 2, 1, T0 + 1_000).build(),
            CallSpec::builder(SERIAL_BASE + 3, 1, T0 + 1_001).build(),
        ])
        .unwrap();
        let now = T0 + 600_000;
        let p = s.select(now, &sel(T0, T0 + 1_000, TaskFilter::AllButIta, 0, 100));
        let mut got = serials(&p);
        got.sort_unstable();
        assert_eq!(got, vec![SERIAL_BASE + 1, SERIAL_BASE + 2]);
        assert_eq!(p.total, 2);
    }

    #[test]
    fn task_filter_and_caller() {
        let mut s = Store::new(1, None);
        s.add(
            (1..=4u8)
                .map(|t| CallSpec::builder(SERIAL_BASE + u64::from(t), t, T0).caller(format!("100{t}")).build())
                .collect(),
        )
        .unwrap();
        let now = T0 + 600_000;
        let all = s.select(now, &sel(T0, T0, TaskFilter::AllButIta, 0, 100));
        let mut got = serials(&all);
        got.sort_unstable();
        assert_eq!(got, vec![SERIAL_BASE + 1, SERIAL_BASE + 2, SERIAL_BASE + 3]);
        let ita = s.select(now, &sel(T0, T0, TaskFilter::Only(4), 0, 100));
        assert_eq!(serials(&ita), vec![SERIAL_BASE + 4]);
        let mut q = sel(T0, T0, TaskFilter::AllButIta, 0, 100);
        q.caller = Some("1002".into());
        assert_eq!(serials(&s.select(now, &q)), vec![SERIAL_BASE + 2]);
    }

    #[test]
    fn paging_is_stable_not_time_ordered_and_shifts_on_arrivals() {
        let mut s = Store::new(9, None);
        s.add((0..250).map(|i| CallSpec::builder(SERIAL_BASE + i * 3, 2, T0 + i as i64).build()).collect()).unwrap();
        let now = T0 + 600_000;
        let mut seen = Vec::new();
        for page in 0..3 {
            let p = s.select(now, &sel(T0, T0 + 1_000, TaskFilter::Only(2), page * 100, 100));
            assert_eq!(p.total, 250);
            seen.extend(serials(&p));
        }
        assert_eq!(seen.len(), 250);
        let whole = s.select(now, &sel(T0, T0 + 1_000, TaskFilter::Only(2), 0, 1_000));
        assert_eq!(serials(&whole), seen, "pages are slices of one order");
        let middle = s.select(now, &sel(T0, T0 + 1_000, TaskFilter::Only(2), 37, 11));
        assert_eq!(serials(&middle), seen[37..48].to_vec());
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 250);
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_ne!(seen, sorted, "order must not be by time or serial");
        let first = s.select(now, &sel(T0, T0 + 1_000, TaskFilter::Only(2), 0, 100));
        assert_eq!(serials(&first), seen[..100].to_vec());
        assert!(s.select(now, &sel(T0, T0 + 1_000, TaskFilter::Only(2), 250, 100)).calls.is_empty());

        // New records join at arbitrary positions, not only at the end.
        s.add((0..50).map(|i| CallSpec::builder(SERIAL_BASE + 1 + i * 3, 2, T0 + 500).build()).collect()).unwrap();
        let after = s.select(now, &sel(T0, T0 + 1_000, TaskFilter::Only(2), 0, 100));
        assert_ne!(serials(&after), seen[..100].to_vec());
    }

    #[test]
    fn add_is_atomic_and_rejects_duplicates() {
        let mut s = Store::new(1, None);
        s.add(vec![CallSpec::builder(SERIAL_BASE, 1, T0).build()]).unwrap();
        let err = s
            .add(vec![CallSpec::builder(SERIAL_BASE + 1, 1, T0).build(), CallSpec::builder(SERIAL_BASE, 1, T0).build()])
            .unwrap_err();
        assert_eq!(err, SpecError::Duplicate(SERIAL_BASE));
        assert_eq!(s.len(), 1);
    }

    fn field(r: &serde_json::Value, k: &str) -> Option<i64> {
        match r.get(k)? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// A client that reads every page and classifies records the documented way reaches exactly
    /// the truth, including ITA records that omit taskType.
    #[test]
    fn served_records_reproduce_the_truth() {
        let g = Generator::new(21, 30.0, T0 - 7_200_000, 1.0, 20_000).unwrap();
        let mut s = Store::new(21, Some(g));
        let now = T0;
        s.advance(now);
        let mut calls: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut talk: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut in_progress = BTreeMap::new();
        for (tasks, fallback) in [(TaskFilter::AllButIta, None), (TaskFilter::Only(4), Some(4))] {
            let mut offset = 0;
            loop {
                let p = s.select(now, &sel(T0 - 7_200_000, now, tasks, offset, 100));
                if p.calls.is_empty() {
                    break;
                }
                offset += p.calls.len() as u64;
                for c in &p.calls {
                    let r = c.record_json(now, 21).unwrap();
                    let task = field(&r, "taskType").or(fallback).unwrap() as u8;
                    let label = task_type_label(task).unwrap().to_string();
                    let state = field(&r, "state").unwrap();
                    if state != 3 {
                        *in_progress.entry((label, state)).or_insert(0u64) += 1;
                        continue;
                    }
                    let secs = field(&r, "talkDuration").unwrap() as u32;
                    let reason = field(&r, "reasonCode").map(|c| c as u32);
                    let o = crate::model::classify(task, secs, reason);
                    *calls.entry((label.clone(), o.label().to_string())).or_default() += 1;
                    if secs > 0 {
                        let e = talk.entry(label).or_default();
                        e.0 += 1;
                        e.1 += u64::from(secs);
                    }
                }
            }
        }
        let truth = s.truth(now, None);
        let truth_calls: BTreeMap<_, _> =
            truth.calls.iter().map(|r| ((r.task_type.clone(), r.outcome.clone()), r.count)).collect();
        assert_eq!(calls, truth_calls);
        assert!(truth.ended_calls > 3_000);
        let truth_talk: BTreeMap<_, _> =
            truth.talk_duration.iter().map(|r| (r.task_type.clone(), (r.count, r.sum))).collect();
        assert_eq!(talk, truth_talk);
        let truth_open: BTreeMap<_, _> = truth
            .in_progress
            .iter()
            .map(|r| ((r.task_type.clone(), r.state.parse::<i64>().unwrap()), r.count))
            .collect();
        assert_eq!(in_progress, truth_open);
        assert!(!in_progress.is_empty(), "calls of the last minutes are still open");
    }

    #[test]
    fn generator_is_pulled_lazily_and_truth_since_filters() {
        let g = Generator::new(5, 1.0, T0 - 3_600_000, 0.01, 0).unwrap();
        let mut s = Store::new(5, Some(g));
        s.advance(T0);
        let n = s.len();
        assert!((40..=80).contains(&n), "about 60 calls in the hour of history: {n}");
        s.advance(T0 + 600_000);
        assert!(s.len() > n);
        let all = s.truth(T0 + 600_000, None);
        let recent = s.truth(T0 + 600_000, Some(T0));
        assert!(all.ended_calls > recent.ended_calls && recent.ended_calls > 0);
        assert_eq!(recent.since_ms, Some(T0));
    }
}
