//! The vendor's window of call start times: what one `queryCallDetailRecord` query selects, and the
//! longest window CEC accepts. Which windows a poll reads is decided downstream (`ingest::plan`).

/// The longest window of one query: CEC refuses windows longer than seven days. A minute is kept in hand
/// in case "cannot exceed seven days" is enforced as "shorter than".
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000 - 60_000;

/// A `[start, end]` window of call start times, epoch ms. CEC's inclusivity is undocumented, so windows
/// are read as if both ends were inclusive and overlaps are absorbed by the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}
