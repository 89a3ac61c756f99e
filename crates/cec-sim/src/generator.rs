//! Seeded random traffic: Poisson arrivals drawn lazily as the clock advances, each call's task
//! type, outcome, reason code, leg durations and latencies drawn from a realistic mix and turned
//! into a consistent timeline by the same builder scripted calls use.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::model::{CallSpec, Outcome, SERIAL_BASE, TASK_ITA_BIDIRECTIONAL, TASK_VOICE_NOTIFICATION};

/// Reason codes drawn for failed ITA calls (Q.850 causes seen in practice).
const ITA_FAILED_CODES: [u32; 9] = [1, 3, 27, 34, 38, 41, 42, 47, 127];
/// Reason codes drawn for failed calls of types 1–3 (1001 stands for "other exceptions").
const CEC_FAILED_CODES: [u32; 4] = [2, 3, 6, 1001];

/// Draws calls in start order; the n-th call depends only on the seed and the first arrival time.
#[derive(Debug)]
pub(crate) struct Generator {
    rng: SmallRng,
    /// Mean gap between arrivals, ms.
    mean_gap_ms: f64,
    duration_scale: f64,
    max_latency_ms: u64,
    /// Fractional so that rounding never accumulates drift in the arrival rate.
    next_start: f64,
    next_serial: u64,
}

impl Generator {
    /// `None` when the rate cannot produce calls (zero, negative or not finite).
    pub(crate) fn new(
        seed: u64,
        calls_per_minute: f64,
        first_ms: i64,
        duration_scale: f64,
        max_latency_ms: u64,
    ) -> Option<Self> {
        if !(calls_per_minute.is_finite() && calls_per_minute > 0.0) {
            return None;
        }
        let mut g = Self {
            rng: SmallRng::seed_from_u64(seed),
            mean_gap_ms: 60_000.0 / calls_per_minute,
            duration_scale: if duration_scale.is_finite() && duration_scale > 0.0 { duration_scale } else { 1.0 },
            max_latency_ms,
            next_start: first_ms as f64,
            next_serial: SERIAL_BASE,
        };
        g.next_start += g.gap();
        Some(g)
    }

    fn gap(&mut self) -> f64 {
        // Exponential gaps make the arrivals a Poisson process.
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        -u.ln() * self.mean_gap_ms
    }

    /// Every call starting at or before `now_ms` not yet drawn, in start order.
    pub(crate) fn drain_until(&mut self, now_ms: i64) -> Vec<CallSpec> {
        let mut out = Vec::new();
        while self.next_start <= now_ms as f64 {
            let start = self.next_start.floor() as i64;
            out.push(self.draw(start));
            self.next_start += self.gap();
        }
        out
    }

    /// A scaled duration in whole ms from a duration in seconds.
    fn scaled(&self, secs: f64) -> i64 {
        (secs * 1_000.0 * self.duration_scale).round() as i64
    }

    fn draw(&mut self, start_ms: i64) -> CallSpec {
        let serial = self.next_serial;
        self.next_serial += self.rng.gen_range(1..=1_000);
        let r = &mut self.rng;
        let task_type = match r.gen_range(0..100) {
            0..=34 => 1,
            35..=54 => 2,
            55..=74 => 3,
            _ => 4,
        };
        let ita = task_type == TASK_ITA_BIDIRECTIONAL;
        let (outcome, reason) = if ita {
            match r.gen_range(0..1_000) {
                0..=649 => (Outcome::Answered, Some(16)),
                650..=729 => (Outcome::Busy, Some(17)),
                730..=849 => (Outcome::NoAnswer, Some(if r.gen_bool(0.5) { 18 } else { 19 })),
                850..=889 => (Outcome::Rejected, Some(21)),
                890..=929 => (Outcome::Cancelled, Some(if r.gen_bool(0.5) { 16 } else { 31 })),
                930..=994 => (Outcome::Failed, Some(ITA_FAILED_CODES[r.gen_range(0..ITA_FAILED_CODES.len())])),
                _ => (Outcome::Unknown, if r.gen_bool(0.5) { None } else { Some(0) }),
            }
        } else {
            match r.gen_range(0..1_000) {
                0..=649 => (Outcome::Answered, Some(r.gen_range(0..=1))),
                650..=849 => {
                    // "Calling party does not answer" needs an agent leg to be the calling party.
                    let code = if task_type != TASK_VOICE_NOTIFICATION && r.gen_bool(0.3) { 4 } else { 5 };
                    (Outcome::NoAnswer, Some(code))
                }
                850..=914 => (Outcome::Cancelled, Some(r.gen_range(0..=1))),
                915..=994 => (Outcome::Failed, Some(CEC_FAILED_CODES[r.gen_range(0..CEC_FAILED_CODES.len())])),
                _ => (Outcome::Unknown, None),
            }
        };
        let queue = r.gen_range(0.0..3.0);
        let agent_ring = r.gen_range(2.0..25.0);
        let ring = r.gen_range(2.0..25.0);
        // Log-uniform between 10 s and 20 min: many short calls, a long tail.
        let talk = (r.gen_range(10f64.ln()..1_200f64.ln())).exp();
        let record_latency = r.gen_range(0..=self.max_latency_ms);
        let end_latency = r.gen_range(0..=self.max_latency_ms);
        let with_data = r.gen_bool(0.2);
        let campaign = r.gen_range(1..=5);
        let mut b = CallSpec::builder(serial, task_type, start_ms)
            .outcome(outcome)
            .reason_code(reason)
            .queue_ms(self.scaled(queue))
            .agent_ring_ms(self.scaled(agent_ring))
            .ring_ms(self.scaled(ring))
            .talk_ms(self.scaled(talk))
            .latency_ms(record_latency, end_latency);
        if with_data {
            b = b.call_data(format!("campaign=c{campaign}"));
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::testing::T0;

    #[test]
    fn deterministic_for_a_seed() {
        let mut a = Generator::new(7, 600.0, T0, 1.0, 5_000).unwrap();
        let mut b = Generator::new(7, 600.0, T0, 1.0, 5_000).unwrap();
        let xs = a.drain_until(T0 + 60_000);
        // Draining in two steps gives the same calls as in one.
        let mut ys = b.drain_until(T0 + 20_000);
        ys.extend(b.drain_until(T0 + 60_000));
        assert_eq!(xs, ys);
        let mut c = Generator::new(8, 600.0, T0, 1.0, 5_000).unwrap();
        assert_ne!(xs, c.drain_until(T0 + 60_000));
    }

    #[test]
    fn no_generator_for_zero_rate() {
        assert!(Generator::new(1, 0.0, T0, 1.0, 0).is_none());
        assert!(Generator::new(1, f64::NAN, T0, 1.0, 0).is_none());
    }

    #[test]
    fn realistic_mix_and_consistent_calls() {
        let mut g = Generator::new(11, 100.0, T0, 0.01, 2_000).unwrap();
        let calls = g.drain_until(T0 + 100 * 60_000);
        let n = calls.len() as f64;
        assert!((9_000.0..11_000.0).contains(&n), "Poisson count {n}");
        let mut per_type = HashMap::new();
        let mut outcomes = HashMap::new();
        let mut prev_serial = 0;
        let mut prev_start = i64::MIN;
        for c in &calls {
            c.validate().unwrap();
            assert!(c.serial > prev_serial && c.start_ms >= prev_start);
            prev_serial = c.serial;
            prev_start = c.start_ms;
            assert!(c.start_ms > T0 && c.start_ms <= T0 + 100 * 60_000);
            assert!(c.record_latency_ms <= 2_000 && c.end_latency_ms <= 2_000);
            *per_type.entry(c.task_type).or_insert(0.0) += 1.0;
            *outcomes.entry(c.outcome()).or_insert(0.0) += 1.0;
            if c.outcome() == Outcome::Answered {
                assert!(c.talk_duration_s >= 1);
                assert!(c.talk_duration_s <= 13, "scaled talk {}", c.talk_duration_s);
            } else {
                assert_eq!(c.talk_duration_s, 0);
            }
            // With duration_scale 0.01 every call is over within a few seconds.
            assert!(c.end_ms - c.start_ms < 14_000);
        }
        let share = |t: u8| per_type[&t] / n;
        assert!((share(1) - 0.35).abs() < 0.03);
        assert!((share(2) - 0.20).abs() < 0.03);
        assert!((share(3) - 0.20).abs() < 0.03);
        assert!((share(4) - 0.25).abs() < 0.03);
        assert!((outcomes[&Outcome::Answered] / n - 0.65).abs() < 0.03);
        for o in Outcome::ALL {
            assert!(outcomes.get(&o).copied().unwrap_or(0.0) > 0.0, "{o:?} never drawn");
        }
    }

    #[test]
    fn unscaled_talk_spans_seconds_to_minutes() {
        let mut g = Generator::new(3, 600.0, T0, 1.0, 0).unwrap();
        let talks: Vec<u32> = g
            .drain_until(T0 + 600 * 60_000)
            .iter()
            .filter(|c| c.talk_duration_s > 0)
            .map(|c| c.talk_duration_s)
            .collect();
        assert!(talks.iter().all(|&t| (10..=1_200).contains(&t)));
        assert!(talks.iter().any(|&t| t < 30) && talks.iter().any(|&t| t > 600));
    }
}
