//! The `Retry-After` response header (RFC 9110 section 10.2.3): parsed
//! here with the rest of the response, turned into a wait by the runtime
//! (which has the clock) and handed to the retry policy as a `Duration`.

use std::time::{Duration, SystemTime};

/// A parsed `Retry-After` header value: a number of seconds or an HTTP
/// date. Dates are kept as they are and turned into a wait by
/// [`RetryAfter::delay`], which takes the time as an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    /// `delay-seconds`; values past `u64::MAX` saturate.
    Seconds(u64),
    /// `HTTP-date`, in any of the three formats RFC 9110 accepts.
    Date(SystemTime),
}

impl RetryAfter {
    /// The wait this value asks for at wall-clock time `now`; a date in the
    /// past is no wait.
    pub(crate) fn delay(self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Seconds(s) => Duration::from_secs(s),
            RetryAfter::Date(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

/// Parses a `Retry-After` header value; `None` for anything that is
/// neither `delay-seconds` nor an HTTP date (negative or fractional
/// numbers, garbage, an empty value), which the caller then ignores.
/// Surrounding spaces and tabs are allowed.
pub(crate) fn parse_retry_after(value: &[u8]) -> Option<RetryAfter> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        let seconds = value.iter().fold(0u64, |n, &d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        return Some(RetryAfter::Seconds(seconds));
    }
    let text = std::str::from_utf8(value).ok()?;
    httpdate::parse_http_date(text).ok().map(RetryAfter::Date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delay_seconds() {
        assert_eq!(parse_retry_after(b"120"), Some(RetryAfter::Seconds(120)));
        assert_eq!(parse_retry_after(b"0"), Some(RetryAfter::Seconds(0)));
        assert_eq!(parse_retry_after(b" \t7 "), Some(RetryAfter::Seconds(7)));
        assert_eq!(parse_retry_after(b"007"), Some(RetryAfter::Seconds(7)));
        assert_eq!(
            parse_retry_after(b"99999999999999999999999999999"),
            Some(RetryAfter::Seconds(u64::MAX)),
            "huge values saturate (and max_backoff caps them)"
        );
        assert_eq!(
            parse_retry_after(b"18446744073709551615"),
            Some(RetryAfter::Seconds(u64::MAX))
        );
    }

    #[test]
    fn parses_http_dates_in_all_three_formats() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        for text in [
            &b"Sun, 06 Nov 1994 08:49:37 GMT"[..],
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994",
            b"  Sun, 06 Nov 1994 08:49:37 GMT\t",
        ] {
            assert_eq!(
                parse_retry_after(text),
                Some(RetryAfter::Date(at)),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            &b""[..],
            b"   ",
            b"-5",
            b"+5",
            b"1.5",
            b"5s",
            b"1e3",
            b"soon",
            b"Sun, 06 Nov 1994 08:49:37",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"\xff\xfe",
            b"12 34",
        ] {
            assert_eq!(
                parse_retry_after(text),
                None,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn dates_become_delays_without_a_clock() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = RetryAfter::Date(now + Duration::from_secs(30));
        assert_eq!(later.delay(now), Duration::from_secs(30));
        let past = RetryAfter::Date(now - Duration::from_secs(30));
        assert_eq!(past.delay(now), Duration::ZERO);
        assert_eq!(RetryAfter::Seconds(5).delay(now), Duration::from_secs(5));
        assert_eq!(
            RetryAfter::Seconds(u64::MAX).delay(now),
            Duration::from_secs(u64::MAX)
        );
    }
}
