//! The vendor API alone, as documented in `../shared/cec-api/`: wire types and the lenient parser
//! ([`wire`]), typed records ([`record`]), the query window and CEC's seven-day limit ([`window`]), the
//! token cache ([`auth`]), the paging client ([`client`]) and the one error type of this boundary
//! ([`error`]).
//!
//! Data flows out of here and never back: nothing under `cec/` imports `ingest`, `metrics`, `store`,
//! `server` or `events` (a test below enforces it). Nothing here counts or logs either: the client tells
//! an [`ApiObserver`] what happened on the wire, and returns what it skipped (rejected records, unusable
//! fields) in its result; the exporter turns both into events outside this module.

pub mod auth;
pub mod client;
pub mod error;
pub mod record;
pub mod window;
pub mod wire;

use std::time::Duration;

pub use error::{ApiError, Endpoint, ErrorKind};
use record::TaskQuery;
use wire::{ParsedRecord, Rejection};

/// A retry the client is about to make after a retryable failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// 1 for the first retry of the request, 2 for the second, …
    pub attempt: u32,
    /// How long the client waits first (backoff, or the server's `Retry-After` when longer).
    pub wait: Duration,
}

/// What the client reports about its exchanges as they happen; implemented outside this module (the
/// exporter counts and logs them as internal events). Called synchronously on the request path: keep
/// implementations to a few increments.
pub trait ApiObserver: Send + Sync {
    /// One HTTP exchange ended: `status` is the HTTP status, `None` when no answer came (timeout,
    /// transport failure).
    fn request(&self, endpoint: Endpoint, status: Option<u16>);

    /// An exchange failed. `retry` says when the client tries the request again; `None` means this
    /// failure ends the read (it is returned to the caller, which reports it once more in its context).
    fn error(&self, error: &ApiError, retry: Option<Retry>);

    /// A new token was fetched, valid for `lifetime`; `after_401` when the previous one was refused by a
    /// business call rather than due for renewal.
    fn token_refreshed(&self, lifetime: Duration, after_401: bool);

    /// A page of `query` at `offset` arrived and was parsed: its entries in order, each a record or why
    /// it was skipped. Told page by page, before the read goes on, so that what a read was served is
    /// reported even when a later page fails the whole read.
    fn page(&self, query: TaskQuery, offset: u64, entries: &[Result<ParsedRecord, Rejection>]);
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The modules `cec` feeds: importing any of them would make data flow backwards.
    const DOWNSTREAM: [&str; 5] = ["ingest", "metrics", "store", "server", "events"];

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The crate-root modules a path written after `crate::` (or `super::super::`…) names: `ingest` for
    /// `crate::ingest::plan`, and each top-level item of a group, `crate::{metrics::x, store}`.
    fn roots_named(path: &str) -> Vec<String> {
        let path = path.trim_start();
        let Some(group) = path.strip_prefix('{') else {
            return vec![path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()];
        };
        let (mut depth, mut items, mut item) = (0, Vec::new(), String::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                _ if depth == 0 => item.push(c),
                _ => {}
            }
        }
        items.push(item);
        items.iter().map(|i| i.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()).collect()
    }

    /// Every `(line, module)` where `source` reaches a crate-root module through `crate::` (or through
    /// enough `super::` to climb out of `cec`: `depth` is how deep the file sits below the crate root).
    fn downstream_uses(source: &str, depth: usize) -> Vec<(usize, String)> {
        let climb = "super::".repeat(depth);
        let mut found = Vec::new();
        // Comments mention paths without importing them.
        let code: Vec<&str> = source.lines().map(|l| l.split("//").next().unwrap_or("")).collect();
        let source = code.join("\n");
        // A grouped import may span lines: search the whole text, remembering where each line starts.
        let starts: Vec<usize> = std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect();
        for prefix in ["crate::", climb.as_str()] {
            for (at, _) in source.match_indices(prefix) {
                let line = starts.partition_point(|&s| s <= at);
                let rest = &source[at + prefix.len()..];
                for root in roots_named(rest) {
                    if DOWNSTREAM.contains(&root.as_str()) {
                        found.push((line, root));
                    }
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn the_detector_sees_plain_grouped_and_relative_paths() {
        let src = ["use crate::secret::Secret;", "use crate::{", "    ingest::plan,", "    secret,", "};"].join("\n");
        assert_eq!(downstream_uses(&src, 1), vec![(2, "ingest".to_owned())]);
        let up = "super::".repeat(2);
        let src =
            format!("fn f(t: &{up}metrics::Telemetry) {{}}\nlet x = crate::{{store::Store, cec}}; // crate::server");
        assert_eq!(downstream_uses(&src, 2), vec![(1, "metrics".to_owned()), (2, "store".to_owned())]);
        // `super::` within cec (one level below the root for cec/client.rs) stays inside cec.
        assert!(downstream_uses("use super::wire::parse_page;", 2).is_empty());
    }

    #[test]
    fn nothing_under_cec_imports_a_downstream_module() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&root.join("cec"), &mut files);
        assert!(files.len() >= 7, "found only {files:?}");
        let mut offences = Vec::new();
        for file in &files {
            let source = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // cec/mod.rs sits one module below the root, cec/client.rs two.
            let rel = file.strip_prefix(&root).expect("under src");
            let depth = rel.components().count() - usize::from(rel.ends_with("mod.rs"));
            for (line, module) in downstream_uses(&source, depth) {
                offences.push(format!("src/{}:{line} imports `{module}`", rel.display()));
            }
        }
        assert!(offences.is_empty(), "data must flow out of cec, never back:\n{}", offences.join("\n"));
    }
}
