//! Event ids: what a subscriber resumes after (PROTOCOL.md 4.7).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of a topic event: `<epoch>-<seq>`, two unsigned decimal numbers.
///
/// Ids are strictly increasing within a topic and ordered as `(epoch, seq)`. In memory the
/// epoch is when the topics instance was created (microseconds since the Unix epoch), so a
/// restarted process never reuses an id; Redis Stream entry ids (`<ms>-<seq>`) have the
/// same shape and are used as they are.
///
/// ```
/// use subscope_core::topics::EventId;
/// let id: EventId = "1733300000000-7".parse().unwrap();
/// assert_eq!(id.to_string(), "1733300000000-7");
/// assert!("7".parse::<EventId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    epoch: u64,
    seq: u64,
}

impl EventId {
    /// The id `<epoch>-<seq>`.
    pub const fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }

    /// The first part: the instance (memory) or the milliseconds (Redis).
    pub const fn epoch(self) -> u64 {
        self.epoch
    }

    /// The second part: the sequence number within the epoch.
    pub const fn seq(self) -> u64 {
        self.seq
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

/// A string that is not an event id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event id of this server (expected <number>-<number>)")]
pub struct ParseEventIdError(String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            // `u64::from_str` takes a leading `+`; an id is digits only.
            (!part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        s.split_once('-')
            .and_then(|(e, q)| Some(Self::new(number(e)?, number(q)?)))
            .ok_or_else(|| {
                // The text is the client's: keep the message short whatever it sent.
                let mut shown: String = s.chars().take(40).collect();
                if shown.len() < s.len() {
                    shown.push('…');
                }
                ParseEventIdError(shown)
            })
    }
}

/// A fresh epoch for an in-memory topics instance: the time in microseconds, and
/// strictly greater than any epoch handed out before in this process.
pub(crate) fn fresh_epoch() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let a: EventId = "5-9".parse().unwrap();
        let b: EventId = "6-0".parse().unwrap();
        assert!(a < b);
        assert_eq!(a, EventId::new(5, 9));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "+1-2",
            "a-1",
            "1 -2",
            "99999999999999999999-1",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
        assert!(fresh_epoch() < fresh_epoch());
    }
}
