//! Durable exactly-once: the real binary with `--state.path`, stopped gracefully, killed with SIGKILL
//! at random moments, kept down while calls end, kept down longer than the backfill and than
//! `--poll.max-catchup`, given a corrupt store or one holding impossible values, and made unable to
//! commit; the files it creates are private to its user. Counters continue and every
//! call is counted exactly once, as the simulator's truth says.

use std::time::{Duration, Instant};

use cec_sim::{CallSpec, Faults, Outcome};

use crate::harness::*;

fn state_args(dir: &std::path::Path) -> Vec<String> {
    vec!["--state.path".into(), dir.to_str().unwrap().into()]
}

fn args<'a>(v: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = v.iter().map(String::as_str).collect();
    out.extend_from_slice(extra);
    out
}

/// Every counter of `before` is at most its value in `after`: Prometheus sees no reset.
fn assert_no_counter_went_back(before: &Metrics, after: &Metrics) {
    for (k, v) in &before.series {
        if k.starts_with("cec_calls_total")
            || k.starts_with("cec_call_end_reasons_total")
            || k.contains("_seconds_bucket")
        {
            let now = after.series.get(k).copied().unwrap_or(0.0);
            assert!(now >= *v, "{k} went from {v} to {now}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_continues_every_counter() {
    let t0 = now();
    let mut rng = Rng::new(21);
    let first: Vec<CallSpec> =
        (0..30).map(|i| random_call(&mut rng, SERIAL0 + i, t0 - 20_000 + i as i64 * 300)).collect();
    let sim = Sim::scripted(first).await;
    let dir = tempfile::tempdir().unwrap();
    let st = state_args(dir.path());
    let exp = Exporter::start(&sim.url, &args(&st, &[]));
    let before = exp.wait_for("30 calls", Duration::from_secs(10), |m| m.calls_total() == 30).await;
    assert!(exp.terminate(Duration::from_secs(8)).expect("stops").success());
    // While it is down, more calls happen.
    let t1 = now();
    sim.sim.add_calls((0..20).map(|i| random_call(&mut rng, SERIAL0 + 100 + i, t1 - 3_000 + i as i64 * 100)).collect());
    // Every answer now takes 3 s: the first scrape comes before the first poll ends.
    sim.faults(Faults { delay_ms: 3_000, ..Faults::default() });
    let exp = Exporter::start(&sim.url, &args(&st, &[]));
    let restored = exp.metrics().await;
    assert_eq!(restored.value("cec_exporter_polls_total", &[]), 0.0, "no poll has finished yet");
    assert_eq!(restored.calls_total(), 30, "counters are restored before the first poll");
    assert_no_counter_went_back(&before, &restored);
    sim.faults(Faults::default());
    let after = exp.wait_for("50 calls", Duration::from_secs(20), |m| m.calls_total() == 50).await;
    assert_no_counter_went_back(&restored, &after);
    assert_matches_truth(&after, &sim.sim.truth());
    let log = exp.stderr();
    assert!(log.contains("msg=\"resuming from the state store\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_end_while_the_exporter_is_down_are_counted_once_after_it_restarts() {
    let t0 = now();
    // Long calls: open when the exporter dies, ended when it comes back.
    let calls: Vec<CallSpec> = (0..10)
        .map(|i| {
            CallSpec::builder(SERIAL0 + i, 1 + (i % 4) as u8, t0 + i as i64 * 100).ring_ms(300).talk_ms(15_000).build()
        })
        .collect();
    let sim = Sim::scripted(calls).await;
    let dir = tempfile::tempdir().unwrap();
    let st = state_args(dir.path());
    let exp = Exporter::start(&sim.url, &args(&st, &["--poll.lookback", "2s"]));
    exp.wait_for("10 calls in progress", Duration::from_secs(10), |m| m.sum("cec_calls_in_progress", &[]) == 10.0)
        .await;
    exp.kill9();
    let ended = t0 + 17_500;
    tokio::time::sleep(Duration::from_millis((ended - now()).max(0) as u64)).await;
    assert_eq!(sim.sim.truth().ended_calls, 10, "all ended while it was down");
    let exp = Exporter::start(&sim.url, &args(&st, &["--poll.lookback", "2s"]));
    let m = exp.wait_for("10 calls", Duration::from_secs(10), |m| m.calls_total() == 10).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let m2 = exp.metrics().await;
    assert_eq!(m2.calls_total(), m.calls_total());
    assert_eq!(m2.sum("cec_calls_in_progress", &[]), 0.0);
    assert_matches_truth(&m2, &sim.sim.truth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downtime_longer_than_the_backfill_resumes_from_the_cursor() {
    let t0 = now();
    let sim = Sim::scripted(vec![CallSpec::builder(SERIAL0, 2, t0 - 1_000).build()]).await;
    let dir = tempfile::tempdir().unwrap();
    let st = state_args(dir.path());
    let flags = ["--poll.backfill", "3s", "--poll.lookback", "2s"];
    let exp = Exporter::start(&sim.url, &args(&st, &flags));
    exp.wait_for("1 call", Duration::from_secs(10), |m| m.calls_total() == 1).await;
    exp.kill9();
    // Down for 9 s, three times the backfill; calls start and end in that time.
    let t1 = now();
    sim.sim.add_calls(
        (1..=6).map(|i| CallSpec::builder(SERIAL0 + i, 4, t1 + i as i64 * 1_000).talk_ms(1_000).build()).collect(),
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    let exp = Exporter::start(&sim.url, &args(&st, &flags));
    let m = exp.wait_for("7 calls", Duration::from_secs(10), |m| m.calls_total() == 7).await;
    assert_matches_truth(&m, &sim.sim.truth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_beyond_max_catchup_skips_and_reports_the_oldest_part() {
    let t0 = now();
    let sim = Sim::scripted(vec![CallSpec::builder(SERIAL0, 2, t0 - 1_000).build()]).await;
    let dir = tempfile::tempdir().unwrap();
    let st = state_args(dir.path());
    let flags = ["--poll.lookback", "2s", "--poll.max-catchup", "5s"];
    let exp = Exporter::start(&sim.url, &args(&st, &flags));
    exp.wait_for("1 call", Duration::from_secs(10), |m| m.calls_total() == 1).await;
    exp.kill9();
    let down = now();
    // One call early in the outage (beyond the 5 s catch-up), one late in it.
    sim.sim.add_calls(vec![
        CallSpec::builder(SERIAL0 + 1, 4, down + 1_000).talk_ms(1_000).build(),
        CallSpec::builder(SERIAL0 + 2, 4, down + 10_000).talk_ms(1_000).build(),
    ]);
    tokio::time::sleep(Duration::from_secs(13)).await;
    let exp = Exporter::start(&sim.url, &args(&st, &flags));
    let m = exp.wait_for("the late call", Duration::from_secs(10), |m| m.calls_total() == 2).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let m2 = exp.metrics().await;
    assert_eq!(m2.calls_total(), 2, "the call in the skipped stretch is not counted");
    assert_eq!(m2.value("cec_calls_total", &[("task_type", "ita_bidirectional"), ("outcome", "answered")]), 1.0);
    let skipped = m.value("cec_exporter_catchup_skipped_seconds_total", &[]);
    assert!((6.0..20.0).contains(&skipped), "skipped {skipped} s");
    let log = exp.stderr();
    assert!(log.contains("calls that started in this stretch are not counted"), "{log}");
}

#[test]
fn a_corrupt_store_stops_start_up_until_it_is_reset_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cec-exporter.redb");
    std::fs::write(&file, b"this is not a redb file, but it is somebody's data").unwrap();
    let base = ["--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k", "--web.listen-address", "127.0.0.1:0"];
    let run = |extra: &[&str]| {
        bin()
            .args(base)
            .args(["--state.path", dir.path().to_str().unwrap()])
            .args(extra)
            .env("CEC_APP_SECRET", "s")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cec-exporter: state store {} is unreadable (", file.display())), "{stderr}");
    assert!(stderr.contains("run once with --state.reset: the file is moved aside (not deleted)"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"this is not a redb file, but it is somebody's data");

    // With --state.reset it starts (and stops here only because port 9 has no CEC: it keeps running).
    let mut child = bin()
        .args(base)
        .args(["--state.path", dir.path().to_str().unwrap(), "--state.reset"])
        .env("CEC_APP_SECRET", "s")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let aside = loop {
        let found: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("cec-exporter.redb.reset-"))
            .collect();
        if let Some(p) = found.into_iter().next() {
            break p;
        }
        assert!(Instant::now() < deadline, "not moved aside");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(std::fs::read(&aside).unwrap(), b"this is not a redb file, but it is somebody's data");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "running with a fresh store");
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_after_twenty_random_kill_9s() {
    let t0 = now();
    let mut rng = Rng::new(77);
    let mut calls = Vec::new();
    // 300 calls over 70 s, some already over, most to come while the exporter is killed again and again.
    for i in 0..300u64 {
        let start = t0 - 20_000 + rng.range(0, 50_000);
        calls.push(random_call(&mut rng, SERIAL0 + i, start));
    }
    // A few long calls that stay open across many restarts.
    for i in 0..5u64 {
        calls.push(
            CallSpec::builder(SERIAL0 + 1_000 + i, 4, t0 + i as i64 * 1_000).ring_ms(500).talk_ms(25_000).build(),
        );
    }
    calls.push(CallSpec::builder(SERIAL0 + 2_000, 4, t0).outcome(Outcome::Busy).build());
    let n = calls.len() as u64;
    let sim = Sim::scripted(calls).await;
    // Slow answers and small pages: a poll takes a while, so the random kills land inside polls as well
    // as between them, and half of the kills are made inside one on purpose.
    sim.faults(Faults { delay_ms: 15, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let st = state_args(dir.path());
    let flags = ["--cec.page-size", "10", "--poll.lookback", "10s"];
    let mut kills_during_polls = 0;
    for round in 0..20 {
        let exp = Exporter::start(&sim.url, &args(&st, &flags));
        let lived = Duration::from_millis(rng.range(100, 1_800) as u64);
        tokio::time::sleep(lived).await;
        if round % 2 == 0 {
            // Every other kill on purpose inside a poll: right after CEC answered one of its requests
            // (the poll then still has pages to read or its commit to make).
            let seen = sim.sim.stats().logged_total;
            let deadline = Instant::now() + Duration::from_secs(5);
            while sim.sim.stats().logged_total == seen && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            kills_during_polls += u32::from(sim.sim.stats().logged_total > seen);
        }
        exp.kill9();
    }
    assert_eq!(kills_during_polls, 10, "ten kills landed right after a request of a poll");
    let exp = Exporter::start(&sim.url, &args(&st, &flags));
    let deadline = Instant::now() + Duration::from_secs(90);
    let m = loop {
        // Scrape first: a call counted after the scrape cannot then be missing from the truth.
        let m = exp.metrics().await;
        let truth = sim.sim.truth();
        assert!(m.calls_total() <= truth.ended_calls, "more counted than ended");
        if truth.ended_calls == n && m.calls_total() == n {
            break m;
        }
        assert!(Instant::now() < deadline, "never caught up: {} of {n}\n{}", m.calls_total(), exp.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_matches_truth(&m, &sim.sim.truth());
    assert_eq!(m.sum("cec_calls_in_progress", &[]), 0.0);
}

/// Fails the test unless this process may make a mount namespace (root on Linux): the tests that use
/// one are `#[ignore]`d, and whoever runs them asked for them, so a missing capability is a failure.
fn assert_mount_namespaces() {
    let ok = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "making a mount namespace (unshare -m, mount -t tmpfs) needs root and util-linux");
}

/// Runs `cmd` inside the mount namespace of process `pid`.
fn in_namespace(pid: u32, cmd: &str) {
    let st =
        std::process::Command::new("nsenter").args(["-t", &pid.to_string(), "-m", "sh", "-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// The exporter in its own mount namespace, with `--state.path` on a tmpfs of `size` there.
fn exporter_on_tmpfs(sim_url: &str, dir: &std::path::Path, size: &str, extra: &[&str]) -> Exporter {
    let script = format!("mount -t tmpfs -o size={size} tmpfs \"$0\" && exec \"$@\"");
    let wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", &script, dir.to_str().unwrap()];
    let mut a = vec!["--state.path", dir.to_str().unwrap()];
    a.extend_from_slice(extra);
    Exporter::start_wrapped(sim_url, &a, &wrap)
}

/// Makes paths immutable (`chattr +i`: not even root may write them, as on a read-only file system)
/// and mutable again when dropped.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    /// Fails the test when `chattr +i` fails: it needs root, `chattr` and a file system with the
    /// immutable attribute (ext4, xfs, btrfs; not tmpfs).
    fn set(paths: &[std::path::PathBuf]) -> Immutable {
        let st = std::process::Command::new("chattr").arg("+i").args(paths).status();
        assert!(
            st.as_ref().is_ok_and(|s| s.success()),
            "chattr +i {paths:?}: {st:?} (needs root, chattr and a file system with the immutable attribute)"
        );
        Immutable(paths.to_vec())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and chattr (scripts/test.sh runs it as root)"]
async fn an_unwritable_state_store_fails_commits_without_counting_and_recovers() {
    let t0 = now();
    let mut rng = Rng::new(31);
    let sim =
        Sim::scripted((0..10).map(|i| random_call(&mut rng, SERIAL0 + i, t0 - 10_000 + i as i64 * 100)).collect())
            .await;
    let dir = tempfile::tempdir().unwrap();
    let st = state_args(dir.path());
    let exp = Exporter::start(&sim.url, &args(&st, &[]));
    exp.wait_for("10 calls", Duration::from_secs(10), |m| m.calls_total() == 10).await;
    let guard = Immutable::set(&[dir.path().join("cec-exporter.redb"), dir.path().to_owned()]);
    let t1 = now();
    sim.sim.add_calls((10..20).map(|i| random_call(&mut rng, SERIAL0 + i, t1 - 2_000 + i as i64 * 10)).collect());
    let m = exp
        .wait_for("two failed commits", Duration::from_secs(15), |m| {
            m.value("cec_exporter_state_commit_failures_total", &[]) >= 2.0
        })
        .await;
    assert_eq!(m.calls_total(), 10, "a poll that could not commit counted nothing");
    assert_eq!(m.value("cec_up", &[]), 0.0);
    let landing = reqwest::get(exp.url("/")).await.unwrap().text().await.unwrap();
    // The kind only: the store's error text (paths, OS messages) stays in the log.
    assert!(landing.contains(" (state_store)</li>"), "{landing}");
    drop(guard);
    let m = exp
        .wait_for("20 calls", Duration::from_secs(15), |m| m.calls_total() == 20 && m.value("cec_up", &[]) == 1.0)
        .await;
    assert_matches_truth(&m, &sim.sim.truth());
    let log = exp.stderr();
    assert!(log.contains("commit failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for a mount namespace with a small tmpfs (scripts/test.sh runs it as root)"]
async fn a_full_disk_fails_commits_without_counting_and_recovers_when_space_returns() {
    assert_mount_namespaces();
    let t0 = now();
    let mut rng = Rng::new(32);
    let sim =
        Sim::scripted((0..10).map(|i| random_call(&mut rng, SERIAL0 + i, t0 - 10_000 + i as i64 * 100)).collect())
            .await;
    let dir = tempfile::tempdir().unwrap();
    let exp = exporter_on_tmpfs(&sim.url, dir.path(), "8m", &[]);
    exp.wait_for("10 calls", Duration::from_secs(10), |m| m.calls_total() == 10).await;
    let mnt = dir.path().to_str().unwrap().to_owned();
    // Fill the disk to the last byte.
    in_namespace(exp.pid(), &format!("dd if=/dev/zero of={mnt}/filler bs=64k 2>/dev/null; true"));
    let t1 = now();
    sim.sim.add_calls((10..400).map(|i| random_call(&mut rng, SERIAL0 + i, t1 - 2_000 + i as i64 * 5)).collect());
    let m = exp
        .wait_for("a failed commit", Duration::from_secs(15), |m| {
            m.value("cec_exporter_state_commit_failures_total", &[]) >= 1.0
        })
        .await;
    assert!(m.calls_total() < 400, "polls that could not commit counted nothing");
    in_namespace(exp.pid(), &format!("rm {mnt}/filler"));
    let m = exp.wait_for("400 calls", Duration::from_secs(20), |m| m.calls_total() == 400).await;
    assert_matches_truth(&m, &sim.sim.truth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_previous_format_is_migrated_and_its_counters_served_at_once() {
    // The format-1 fixture (tests/fixtures/state-format-1/README.md): 2 ITA calls counted, 2 open.
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-format-1/cec-exporter.redb");
    std::fs::copy(fixture, dir.path().join("cec-exporter.redb")).unwrap();
    // No CEC answers: whatever /metrics shows comes from the migrated store.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let st = state_args(dir.path());
    let exp = Exporter::start(&nowhere, &args(&st, &["--cec.timeout", "300ms"]));
    let m = exp.metrics().await;
    assert_eq!(m.value("cec_calls_total", &[("task_type", "ita_bidirectional"), ("outcome", "answered")]), 1.0);
    assert_eq!(m.value("cec_calls_total", &[("task_type", "ita_bidirectional"), ("outcome", "busy")]), 1.0);
    assert_eq!(
        m.value(
            "cec_call_end_reasons_total",
            &[("task_type", "ita_bidirectional"), ("reason_code", "17"), ("reason", "user_busy")]
        ),
        1.0
    );
    assert_eq!(m.value("cec_call_talk_duration_seconds_sum", &[("task_type", "ita_bidirectional")]), 56.0);
    assert_eq!(m.value("cec_calls_in_progress", &[("task_type", "ita_bidirectional"), ("state", "2")]), 1.0);
    assert_eq!(m.value("cec_calls_in_progress", &[("task_type", "ita_bidirectional"), ("state", "1")]), 1.0);
    let log = exp.stderr();
    assert!(log.contains("msg=\"migrated the state store\" path=") && log.contains("from=1 to=2"), "{log}");
}

/// A store that `Store::commit` accepts but that no exporter could have written: each must stop start-up
/// with exit 2 and a message naming the file and the value, never a panic.
#[test]
fn a_hand_made_store_with_impossible_values_stops_start_up_naming_the_file() {
    use cec_exporter::cec::record::{CallId, CallState, TaskQuery, TaskType};
    use cec_exporter::ingest::ledger::{Ledger, OpenCall, Scalars, State};
    use cec_exporter::store::Store;
    const T0: i64 = 1_800_000_000_000;
    let ok = Scalars {
        cursor_ms: Some(T0),
        floor_ms: T0 - 120_000,
        covered_from_ms: Some(T0 - 3_600_000),
        newest_start_ms: Some(T0),
    };
    let talking = OpenCall {
        lo_ms: T0 - 5_000,
        hi_ms: T0 - 5_000,
        state: CallState::Talking,
        task_type: TaskType::ItaBidirectional,
        query: TaskQuery::ITA,
    };
    let cases = [
        (
            "an open call in state 3",
            Ledger::restore([], [(CallId(7), OpenCall { state: CallState::Ended, ..talking })], ok),
            "open call 7: state 3 is not an open state",
        ),
        (
            "a cursor after the year 9999",
            Ledger::restore([], [(CallId(7), talking)], Scalars { cursor_ms: Some(253_402_300_800_000), ..ok }),
            "cursor 253402300800000 is not a time from 1970 to the year 9999",
        ),
        (
            "a floor after the cursor",
            Ledger::restore([], [], Scalars { floor_ms: T0 + 1, ..ok }),
            "floor 1800000000001 lies after the cursor 1800000000000",
        ),
    ];
    for (what, ledger, detail) in cases {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, _) = Store::open(dir.path(), false).unwrap();
            store.commit(&State { ledger, aggregates: Default::default() }).unwrap();
        }
        let out = bin()
            .args(["--cec.url", "http://127.0.0.1:9", "--cec.app-key", "k", "--web.listen-address", "127.0.0.1:0"])
            .args(["--state.path", dir.path().to_str().unwrap()])
            .env("CEC_APP_SECRET", "s")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        let file = dir.path().join("cec-exporter.redb");
        let want =
            format!("cec-exporter: state store {} is unreadable ({detail}); it was left as it is.", file.display());
        assert!(stderr.contains(&want), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}

/// The state directory and the store are created private to the exporter's user.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_directory_is_created_0700_and_the_store_0600() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::scripted(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let st = state_args(&state);
    let exp = Exporter::start(&sim.url, &args(&st, &[]));
    exp.wait_for("a poll", Duration::from_secs(10), |m| m.value("cec_exporter_polls_total", &[]) >= 1.0).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("cec-exporter.redb")), 0o600);
}
