//! Content negotiation for the telemetry path: which exposition [`Format`] a scraper gets, from its
//! `Accept` header as RFC 9110 §12.5.1 defines it (media ranges, parameters, q-values).
//!
//! Each format takes the q-value of the most specific range that matches it (`type/subtype` over
//! `type/*` over `*/*`); `q=0` means "not acceptable"; the higher q wins. Parameters other than `q`
//! (`version`, `charset`, `escaping`) do not decide the match: the one body this exporter renders per
//! format is valid for every version Prometheus asks for (legacy names only). A tie goes to OpenMetrics
//! when the scraper named it, and to the classic text when only a wildcard covers both, as `curl` and
//! browsers send `*/*` and get readable text (as with client_golang). Anything unparsable, or nothing
//! acceptable, falls back to the text format: a scrape is never refused over its header.

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0, with exemplars.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    Text,
}

/// How a format was matched by one media range: its q-value (in thousandths, as RFC 9110 allows
/// three decimals) and how specific the range was (2 `type/subtype`, 1 `type/*`, 0 `*/*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Match {
    specificity: u8,
    q: u16,
}

impl Format {
    /// The format for a request's `Accept` header (`None` when it had none).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        let mut om: Option<Match> = None;
        let mut text: Option<Match> = None;
        for range in accept.split(',') {
            let Some((ty, sub, q)) = parse_range(range) else { continue };
            for (best, (fty, fsub)) in [(&mut om, ("application", "openmetrics-text")), (&mut text, ("text", "plain"))]
            {
                let specificity = match (ty, sub) {
                    ("*", "*") => 0,
                    (t, "*") if t.eq_ignore_ascii_case(fty) => 1,
                    (t, s) if t.eq_ignore_ascii_case(fty) && s.eq_ignore_ascii_case(fsub) => 2,
                    _ => continue,
                };
                let m = Match { specificity, q };
                // The most specific range decides; among equally specific ones, the most generous.
                if best.is_none_or(|b| m > b) {
                    *best = Some(m);
                }
            }
        }
        let q = |m: Option<Match>| m.map_or(0, |m| m.q);
        match (q(om), q(text)) {
            (0, _) => Format::Text,
            (o, t) if o > t => Format::OpenMetrics,
            (o, t) if o < t => Format::Text,
            // A tie: OpenMetrics if the scraper asked for it by name (or by `application/*`).
            _ if om.is_some_and(|m| m.specificity > 0) => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// One element of an `Accept` header: `type/subtype` and its q-value in thousandths; `None` when it is
/// malformed (it is then ignored, as RFC 9110 lets a server do).
fn parse_range(range: &str) -> Option<(&str, &str, u16)> {
    let mut parts = range.split(';');
    let (ty, sub) = parts.next()?.trim().split_once('/')?;
    let (ty, sub) = (ty.trim(), sub.trim());
    if !is_token(ty) || !is_token(sub) || (ty == "*" && sub != "*") {
        return None;
    }
    let mut q = 1000;
    // An empty parameter (`type/sub;` or `;;`) is allowed by RFC 9110's grammar and means nothing.
    for param in parts.filter(|p| !p.trim().is_empty()) {
        let (name, value) = param.split_once('=')?;
        // `q` separates the media type's parameters from accept extensions; later ones do not matter.
        if name.trim().eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim())?;
            break;
        }
    }
    Some((ty, sub, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths =
        frac.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// An RFC 9110 token (what a media type and subtype are made of).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Format::{OpenMetrics, Text};

    fn n(accept: &str) -> Format {
        Format::negotiate(Some(accept))
    }

    #[test]
    fn what_prometheus_sends() {
        // Prometheus 2.0–2.48 (a fixed header).
        assert_eq!(
            n("application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            OpenMetrics
        );
        // Prometheus 2.49–2.55, default scrape_protocols [OpenMetricsText1.0.0, OpenMetricsText0.0.1, PrometheusText0.0.4].
        assert_eq!(
            n("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
            OpenMetrics
        );
        // Prometheus 3.x, default scrape_protocols with PrometheusText1.0.0 and UTF-8 names allowed.
        assert_eq!(
            n("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
            OpenMetrics
        );
        // Native histograms on (protobuf first): the best format this exporter has is OpenMetrics.
        assert_eq!(
            n("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
            OpenMetrics
        );
        // scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0] — the scraper prefers text.
        assert_eq!(
            n("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.3"),
            Text
        );
        // scrape_protocols: [PrometheusText0.0.4] alone: OpenMetrics only through */*, at a lower q.
        assert_eq!(n("text/plain;version=0.0.4;q=0.5,*/*;q=0.4"), Text);
    }

    #[test]
    fn q_zero_is_not_acceptable() {
        assert_eq!(n("application/openmetrics-text;q=0"), Text);
        assert_eq!(n("application/openmetrics-text; version=1.0.0; q=0.000"), Text);
        assert_eq!(n("*/*;q=0.1,application/openmetrics-text;q=0"), Text, "the specific range wins over */*");
        assert_eq!(n("text/plain;q=0,application/openmetrics-text;q=0.1"), OpenMetrics);
        assert_eq!(n("text/plain;q=0,*/*"), OpenMetrics, "text refused, OpenMetrics through */*");
        assert_eq!(n("text/plain;q=0,application/openmetrics-text;q=0"), Text, "nothing acceptable: fall back");
    }

    #[test]
    fn empty_parameters_are_allowed_and_mean_nothing() {
        assert_eq!(n("application/openmetrics-text;"), OpenMetrics);
        assert_eq!(n("application/openmetrics-text;;version=1.0.0; ;q=0.9,text/plain;q=0.5"), OpenMetrics);
        assert_eq!(n("application/openmetrics-text; ;q=0"), Text);
    }

    #[test]
    fn highest_q_wins_and_a_named_tie_prefers_openmetrics() {
        assert_eq!(n("text/plain;q=0.9,application/openmetrics-text;q=0.8"), Text);
        assert_eq!(n("text/plain;q=0.8,application/openmetrics-text;q=0.9"), OpenMetrics);
        assert_eq!(n("text/plain,application/openmetrics-text"), OpenMetrics);
        assert_eq!(n("text/plain;q=0.5,application/*;q=0.5"), OpenMetrics);
        assert_eq!(n("text/*;q=0.3,application/openmetrics-text;q=0.2"), Text);
        assert_eq!(n("text/*"), Text);
        assert_eq!(n("application/*"), OpenMetrics);
        // Equally specific ranges for one format: the most generous counts.
        assert_eq!(
            n("text/plain;version=1.0.0;q=0.1,text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"),
            Text
        );
    }

    #[test]
    fn wildcards_alone_give_text_as_curl_and_browsers_expect() {
        assert_eq!(n("*/*"), Text);
        assert_eq!(n("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"), Text);
        assert_eq!(Format::negotiate(None), Text);
        assert_eq!(n(""), Text);
    }

    #[test]
    fn case_and_whitespace_do_not_matter() {
        assert_eq!(n("Application/OpenMetrics-Text; Version=1.0.0; Q=0.7 , TEXT/PLAIN ; q=0.5"), OpenMetrics);
        assert_eq!(n("APPLICATION/OPENMETRICS-TEXT;Q=0"), Text);
        assert_eq!(n("text/plain;q=0.5,\tapplication/openmetrics-text ;q=1.0"), OpenMetrics);
    }

    #[test]
    fn garbage_falls_back_to_text_without_panicking() {
        for accept in [
            "garbage",
            ",,,",
            ";;;",
            "/",
            "*/plain",
            "application/openmetrics-text;q=2",
            "application/openmetrics-text;q=0.5.5",
            "application/openmetrics-text;q=-1",
            "application/openmetrics-text;q=",
            "application/openmetrics-text;q=0.1234",
            "application/openmetrics-text;q",
            "application/openmetrics-text;q=1.5",
            "application/open metrics-text",
            "application/openmetrics-text;q=\u{663}",
            "\u{0}\u{ff}é/ü;q=é",
            "application/openmetrics-text/extra",
        ] {
            assert_eq!(n(accept), Text, "{accept:?}");
        }
        // A malformed element is skipped; the well-formed ones still count.
        assert_eq!(n("garbage;;q=x,application/openmetrics-text;q=0.4,text/plain;q=zz"), OpenMetrics);
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.05"), Some(50));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("0."), Some(0));
        assert_eq!(parse_qvalue("1.001"), None);
        assert_eq!(parse_qvalue("01"), None);
    }
}
