//! Log output: logfmt (`ts=… level=info msg="…" key=value`, as Prometheus' own components write) or
//! JSON, one line per event, to standard error.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How much is logged (`--log.level`). Only this crate logs at this level; dependencies log warnings and up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    /// One line per poll.
    Debug,
    Trace,
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> tracing::Level {
        match level {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// Log output format (`--log.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `ts=… level=info msg="…" key=value`, as Prometheus' own components write.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Only this crate logs at `level`; dependencies log warnings and up.
pub fn init(level: tracing::Level, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,cec_exporter={level}"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
}

/// The logfmt event format.
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        write!(w, "ts={ts} level={}", meta.level().as_str().to_ascii_lowercase())?;
        let mut v = Fields { msg: String::new(), rest: String::new() };
        event.record(&mut v);
        w.write_str(" msg=")?;
        write_value(&mut w, &v.msg)?;
        w.write_str(&v.rest)?;
        // The fields of the spans around the event (with `--config.file`, the poller's `tenant=<name>`).
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(w, " {fields}")?;
                    }
                }
            }
        }
        writeln!(w)
    }
}

struct Fields {
    msg: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            let _ = write!(self.rest, " {}=", field.name());
            let _ = write_value(&mut self.rest, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Writes a logfmt value, quoted when it has spaces, quotes, `=` or is empty.
pub fn write_value(w: &mut impl fmt::Write, v: &str) -> fmt::Result {
    if !v.is_empty() && !v.chars().any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control()) {
        return w.write_str(v);
    }
    w.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            c if c.is_control() => write!(w, "\\u{{{:x}}}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// Epoch ms as an RFC 3339 time with milliseconds, for log lines (a time before 1970 shows as the epoch).
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(epoch_ms(ms)).to_string()
}

/// Epoch ms as an RFC 3339 time in whole seconds, for pages people read (a time before 1970 shows as
/// the epoch).
pub fn rfc3339_s(ms: i64) -> String {
    humantime::format_rfc3339_seconds(epoch_ms(ms)).to_string()
}

fn epoch_ms(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)
}

/// Runs `f` under a subscriber that writes the production logfmt at `max_level` and below into
/// memory; returns what `f` returned and the lines written, each without its leading timestamp.
#[cfg(test)]
pub(crate) fn capture<R>(max_level: tracing::Level, f: impl FnOnce() -> R) -> (R, Vec<String>) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Capture::default();
    let sink = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(max_level)
        .event_format(Logfmt)
        .with_writer(move || sink.clone())
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(out.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap();
    let lines = text.lines().map(|l| l.split_once(' ').expect("a timestamp first").1.to_owned()).collect();
    (r, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_needed() {
        let q = |v: &str| {
            let mut s = String::new();
            write_value(&mut s, v).unwrap();
            s
        };
        assert_eq!(q("plain"), "plain");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("poll failed"), "\"poll failed\"");
        assert_eq!(q("a=\"b\"\n"), "\"a=\\\"b\\\"\\n\"");
    }
}
