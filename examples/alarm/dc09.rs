//! SIA DC-09 on the wire, shared by the `alarm_receiver` and `alarm_panel`
//! examples: the envelope around a message (LF, CRC, length, body, CR), the
//! header fields after the token, and the `_HH:MM:SS,MM-DD-YYYY` timestamps,
//! always in UTC.
//!
//! ```text
//! \n  0695  003B  "SIA-DCS"0002R1L0#1234[#1234|Nri1/BA01]_14:03:07,05-21-2025  \r
//!     CRC   len   body: what the CRC and the length cover
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use flexi_socket::checksum::Checksum;

/// The byte that opens a frame; the framing ends it at CR.
pub const LF: u8 = b'\n';

/// The longest frame from LF to CR, both included: the length field has three
/// hex digits, so a body has at most 0xFFF bytes.
pub const MAX_FRAME: usize = 1 + 4 + 4 + 0xFFF + 1;

/// `body` with LF, CRC and length in front: a frame but for the CR, which
/// the framing appends.
pub fn seal(body: &[u8]) -> Vec<u8> {
    debug_assert!(body.len() <= 0xFFF, "a DC-09 body has at most 0xFFF bytes");
    let mut frame = Vec::with_capacity(9 + body.len());
    frame.push(LF);
    frame.extend_from_slice(Checksum::Crc16Arc.to_hex(body).as_bytes());
    frame.extend_from_slice(format!("{:04X}", body.len()).as_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The body of a frame's bytes after its LF (CRC, length, body), if both
/// fields are well formed and agree with the body. Hex in any case.
pub fn open(frame: &[u8]) -> Option<&[u8]> {
    let (crc, rest) = frame.split_at_checked(4)?;
    let (length, body) = rest.split_at_checked(4)?;
    let well_formed = crc.iter().all(u8::is_ascii_hexdigit)
        && length[0] == b'0'
        && length[1..].iter().all(u8::is_ascii_hexdigit);
    if !well_formed || hex_value(&length[1..])? != body.len() {
        return None;
    }
    Checksum::Crc16Arc.verify_hex(body, crc).then_some(body)
}

/// The token between the body's opening quotes and what follows them:
/// `"SIA-DCS"0002...` gives `SIA-DCS` and `0002...`.
pub fn split_token(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = body.strip_prefix(b"\"")?;
    let close = rest.iter().position(|&b| b == b'"')?;
    Some((&rest[..close], &rest[close + 1..]))
}

/// The fields between the token and the data: `0002R1L0#1234`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Four digits; a retransmission repeats them. DC-09 says decimal
    /// (0001–9999), but common senders count in hex (`000A` after `0009`),
    /// so hex digits are accepted and echoed back as they came.
    pub sequence: &'a str,
    /// The receiver number (1–6 hex digits after `R`), when present.
    pub receiver: Option<&'a str>,
    /// The line prefix (1–6 hex digits after `L`).
    pub line: &'a str,
    /// The account (3–16 hex digits after `#`).
    pub account: &'a str,
}

impl<'a> Header<'a> {
    /// The header at the start of `rest` and what follows its `[`.
    pub fn parse(rest: &'a [u8]) -> Option<(Self, &'a [u8])> {
        let (sequence, rest) = run(rest, 4..=4, u8::is_ascii_hexdigit)?;
        let (receiver, rest) = match rest.strip_prefix(b"R") {
            Some(rest) => {
                let (receiver, rest) = run(rest, 1..=6, u8::is_ascii_hexdigit)?;
                (Some(receiver), rest)
            }
            None => (None, rest),
        };
        let (line, rest) = run(rest.strip_prefix(b"L")?, 1..=6, u8::is_ascii_hexdigit)?;
        let (account, rest) = run(rest.strip_prefix(b"#")?, 3..=16, u8::is_ascii_hexdigit)?;
        let header = Header {
            sequence,
            receiver,
            line,
            account,
        };
        Some((header, rest.strip_prefix(b"[")?))
    }
}

impl fmt::Display for Header<'_> {
    /// As on the wire: `0002R1L0#1234`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sequence)?;
        if let Some(receiver) = self.receiver {
            write!(f, "R{receiver}")?;
        }
        write!(f, "L{}#{}", self.line, self.account)
    }
}

/// The longest run of bytes matching `accept` at the start of `bytes`, if its
/// length is within `lengths`, and the rest.
fn run(
    bytes: &[u8],
    lengths: std::ops::RangeInclusive<usize>,
    accept: fn(&u8) -> bool,
) -> Option<(&str, &[u8])> {
    let end = bytes.iter().position(|b| !accept(b)).unwrap_or(bytes.len());
    if !lengths.contains(&end) {
        return None;
    }
    // Every accepted byte is ASCII.
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    Some((text, &bytes[end..]))
}

fn hex_value(digits: &[u8]) -> Option<usize> {
    usize::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit in i64")
}

/// `_HH:MM:SS,MM-DD-YYYY` for a time in Unix seconds.
pub fn timestamp(unix: i64) -> String {
    let (days, seconds) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "_{:02}:{:02}:{:02},{month:02}-{day:02}-{year:04}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
    )
}

/// The Unix seconds of a `_HH:MM:SS,MM-DD-YYYY` timestamp (exactly that,
/// with a real date and time of day).
pub fn parse_timestamp(text: &[u8]) -> Option<i64> {
    const PATTERN: &[u8] = b"_00:00:00,00-00-0000";
    let fits = text.len() == PATTERN.len()
        && text
            .iter()
            .zip(PATTERN)
            .all(|(&byte, &expected)| match expected {
                b'0' => byte.is_ascii_digit(),
                _ => byte == expected,
            });
    if !fits {
        return None;
    }
    let number = |from: usize, to: usize| {
        text[from..to]
            .iter()
            .fold(0, |n, &digit| n * 10 + i64::from(digit - b'0'))
    };
    let (hour, minute, second) = (number(1, 3), number(4, 6), number(7, 9));
    let (month, day, year) = (number(10, 12), number(13, 15), number(16, 20));
    if hour > 23 || minute > 59 || second > 59 || !(1..=12).contains(&month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A day that does not exist (Feb 30) comes back as another date.
    if day < 1 || civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm: years counted from March, in 400-year eras).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (year.div_euclid(400), year.rem_euclid(400));
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let (era, day_of_era) = (days.div_euclid(146_097), days.rem_euclid(146_097));
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month, day)
}
