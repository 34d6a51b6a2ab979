//! [`DelimitedCodec`]: a message runs from a start sequence to an end sequence.

use std::io;
use std::mem;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use super::separator::DEFAULT_DELIMITED_MAX;
use crate::error::Error;

/// Frames that open with a start sequence and close with an end sequence, one
/// or more bytes each (STX/ETX, `"\n"`/`"\r"`, `"<msg>"`/`"</msg>"`, ...).
///
/// Neither sequence is part of the message. The decoder holds to these rules:
///
/// - Bytes before a start are dropped and reported once per run as
///   [`Decoded::Discarded`] with [`Error::Unframed`].
/// - A start inside a frame restarts the frame: the partial frame is reported
///   as [`Error::FrameTruncated`], and the message is what follows the new
///   start.
/// - A frame whose payload is longer than [`max_length`](Self::max_length) is
///   reported once as [`Error::FrameTooLarge`] and dropped up to its end (or up
///   to a new start, which opens the next frame); decoding then resumes.
/// - At EOF an unfinished frame is not delivered: it is reported as
///   [`Error::FrameTruncated`].
/// - Where both sequences match at the same position, the end wins, so the
///   start and the end may be the same bytes (`"|"`...`"|"`).
///
/// The codec never buffers more than `max_length` plus the longer sequence,
/// and never examines the same position twice, even when a sequence is split
/// across reads.
///
/// Encoding wraps the message in the start and end; a message that itself
/// contains either sequence is not checked and reaches the peer cut.
#[derive(Clone, Debug)]
pub struct DelimitedCodec {
    start: Bytes,
    end: Bytes,
    max_length: usize,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for a start; `reported` once the current run of stray bytes was.
    Hunting { reported: bool },
    /// After a start: the buffer holds the payload, and no delimiter starts
    /// before `next_index`.
    InFrame { next_index: usize },
    /// Dropping an oversize frame (already reported) up to its end or a new start.
    Discarding,
}

const HUNTING: State = State::Hunting { reported: false };
const FRAME_OPENED: State = State::InFrame { next_index: 0 };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delimiter {
    Start,
    End,
}

/// Where a scan stopped.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// A delimiter at this index, decided by the bytes at hand.
    Found(usize, Delimiter),
    /// No delimiter before this index; from here on more bytes are needed.
    Pending(usize),
}

/// How a sequence compares with the bytes at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    Match,
    Mismatch,
    /// The bytes at hand are a proper prefix of the sequence.
    Undecided,
}

impl DelimitedCodec {
    /// Frames from `start` to `end`, with a limit of 64 KiB per frame.
    ///
    /// # Panics
    ///
    /// If `start` or `end` is empty: an empty sequence would match at every
    /// byte position.
    pub fn new(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        let (start, end) = (start.into(), end.into());
        assert!(
            !start.is_empty() && !end.is_empty(),
            "the framing start and end sequences must be at least one byte long"
        );
        DelimitedCodec {
            start,
            end,
            max_length: DEFAULT_DELIMITED_MAX,
            state: HUNTING,
        }
    }

    /// Sets the largest accepted payload in bytes, delimiters excluded
    /// (default 64 KiB).
    #[must_use]
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = max_length;
        self
    }

    /// The sequence that opens a frame.
    pub fn start(&self) -> &[u8] {
        &self.start
    }

    /// The sequence that closes a frame.
    pub fn end(&self) -> &[u8] {
        &self.end
    }

    /// The largest accepted payload in bytes, delimiters excluded.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Whether it holds nothing of the stream it decodes: it is as a new
    /// one of its configuration is (a resting connection keeps no such
    /// decoder: see `ConnectionDecoder::is_as_new`).
    pub(super) fn is_fresh(&self) -> bool {
        self.state == HUNTING
    }

    fn delimiter_len(&self, delimiter: Delimiter) -> usize {
        match delimiter {
            Delimiter::Start => self.start.len(),
            Delimiter::End => self.end.len(),
        }
    }

    /// The first delimiter in `buf` at or after `from`; the end is looked for
    /// only if `in_frame`. A position is decided only when both sequences are,
    /// so the outcome does not depend on how the input was split.
    fn scan(&self, buf: &[u8], from: usize, in_frame: bool) -> Scan {
        for at in from..buf.len() {
            let rest = &buf[at..];
            let end = if in_frame {
                compare(rest, &self.end)
            } else {
                Compare::Mismatch
            };
            match (end, compare(rest, &self.start)) {
                (Compare::Match, _) => return Scan::Found(at, Delimiter::End),
                (Compare::Mismatch, Compare::Match) => return Scan::Found(at, Delimiter::Start),
                (Compare::Mismatch, Compare::Mismatch) => {}
                _ => return Scan::Pending(at),
            }
        }
        Scan::Pending(buf.len())
    }

    /// Drops stray bytes up to a start; reports them unless this run already was.
    fn hunt(&mut self, buf: &mut BytesMut, reported: bool) -> Option<Decoded> {
        let (dropped, next) = match self.scan(buf, 0, false) {
            Scan::Found(at, _) => {
                buf.advance(at + self.start.len());
                (at, FRAME_OPENED)
            }
            Scan::Pending(at) => {
                buf.advance(at);
                (
                    at,
                    State::Hunting {
                        reported: reported || at > 0,
                    },
                )
            }
        };
        self.state = next;
        (dropped > 0 && !reported).then_some(Decoded::discarded(Error::Unframed { bytes: dropped }))
    }

    pub(super) fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        dst.reserve(self.start.len() + message.len() + self.end.len());
        dst.put_slice(&self.start);
        dst.put_slice(message);
        dst.put_slice(&self.end);
        Ok(())
    }
}

impl Decoder for DelimitedCodec {
    type Item = Decoded;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        loop {
            match self.state {
                State::Hunting { reported } => {
                    if let Some(report) = self.hunt(buf, reported) {
                        return Ok(Some(report));
                    }
                    if self.state != FRAME_OPENED {
                        return Ok(None);
                    }
                }
                State::InFrame { next_index } => {
                    let max = self.max_length;
                    return Ok(Some(match self.scan(buf, next_index, true) {
                        Scan::Found(at, delimiter) => {
                            let payload = buf.split_to(at).freeze();
                            buf.advance(self.delimiter_len(delimiter));
                            self.state = match delimiter {
                                Delimiter::End => HUNTING,
                                Delimiter::Start => FRAME_OPENED,
                            };
                            match delimiter {
                                _ if at > max => {
                                    Decoded::discarded(Error::FrameTooLarge { length: at, max })
                                }
                                Delimiter::End => Decoded::Frame(payload),
                                Delimiter::Start => {
                                    Decoded::discarded(Error::FrameTruncated { bytes: at })
                                }
                            }
                        }
                        Scan::Pending(at) if at <= max => {
                            self.state = State::InFrame { next_index: at };
                            return Ok(None);
                        }
                        Scan::Pending(at) => {
                            // No delimiter within the first `max + 1` bytes: oversize.
                            buf.advance(at);
                            self.state = State::Discarding;
                            Decoded::discarded(Error::FrameTooLarge { length: at, max })
                        }
                    }));
                }
                State::Discarding => match self.scan(buf, 0, true) {
                    Scan::Found(at, delimiter) => {
                        buf.advance(at + self.delimiter_len(delimiter));
                        self.state = match delimiter {
                            Delimiter::End => HUNTING,
                            Delimiter::Start => FRAME_OPENED,
                        };
                    }
                    Scan::Pending(at) => {
                        buf.advance(at);
                        return Ok(None);
                    }
                },
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Decoded>> {
        if let Some(decoded) = self.decode(buf)? {
            return Ok(Some(decoded));
        }
        let bytes = buf.len();
        buf.clear();
        Ok(match mem::replace(&mut self.state, HUNTING) {
            // An opened frame is reported even when empty: its start was sent.
            State::InFrame { .. } => Some(Decoded::discarded(Error::FrameTruncated { bytes })),
            State::Hunting { reported } => {
                (bytes > 0 && !reported).then_some(Decoded::discarded(Error::Unframed { bytes }))
            }
            // The rest of an oversize frame was already reported.
            State::Discarding => None,
        })
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for DelimitedCodec {
    type Error = io::Error;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> io::Result<()> {
        self.encode_message(message.as_ref(), dst)
    }
}

fn compare(rest: &[u8], sequence: &[u8]) -> Compare {
    match rest.get(..sequence.len()) {
        Some(head) if head == sequence => Compare::Match,
        None if sequence.starts_with(rest) => Compare::Undecided,
        _ => Compare::Mismatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::tests::{Outcome, feed};

    const STX: &[u8] = b"\x02";
    const ETX: &[u8] = b"\x03";

    fn codec(start: &'static str, end: &'static str, max: usize) -> DelimitedCodec {
        DelimitedCodec::new(start, end).with_max_length(max)
    }

    #[test]
    fn stx_etx_frames_in_one_buffer() {
        let mut codec = DelimitedCodec::new(STX, ETX);
        let out = feed(&mut codec, &[b"\x02one\x03\x02\x03\x02two\x03"]);
        assert_eq!(out, Outcome::frames(&["one", "", "two"]));
    }

    #[test]
    fn frame_split_across_reads() {
        let out = feed(&mut codec("<", ">", 16), &[b"<he", b"ll", b"o", b">"]);
        assert_eq!(out, Outcome::frames(&["hello"]));
    }

    #[test]
    fn delimiters_split_across_reads() {
        let out = feed(
            &mut codec("<msg>", "</msg>", 16),
            &[b"<m", b"sg>ab</", b"msg", b"><msg", b">c</msg>"],
        );
        assert_eq!(out, Outcome::frames(&["ab", "c"]));
    }

    #[test]
    fn newline_to_carriage_return_like_dc09() {
        let out = feed(&mut codec("\n", "\r", 16), &[b"\nABC\r\n", b"DEF\r"]);
        assert_eq!(out, Outcome::frames(&["ABC", "DEF"]));
    }

    #[test]
    fn partial_start_is_not_a_start() {
        let out = feed(&mut codec("<<", ">>", 16), &[b"<", b"x<<a>b>>"]);
        assert_eq!(
            out,
            vec![Outcome::Unframed { bytes: 2 }, Outcome::frame("a>b")]
        );
    }

    #[test]
    fn junk_before_a_start_is_reported_once_per_run() {
        let out = feed(
            &mut codec("<", ">", 16),
            &[b"junk", b"more junk", b"<a>", b"\r\n<b>", b"<c>"],
        );
        assert_eq!(
            out,
            vec![
                Outcome::Unframed { bytes: 4 },
                Outcome::frame("a"),
                Outcome::Unframed { bytes: 2 },
                Outcome::frame("b"),
                Outcome::frame("c"),
            ]
        );
    }

    #[test]
    fn an_end_outside_a_frame_is_junk() {
        let out = feed(&mut codec("<", ">", 16), &[b"a>b<c>"]);
        assert_eq!(
            out,
            vec![Outcome::Unframed { bytes: 3 }, Outcome::frame("c")]
        );
    }

    #[test]
    fn a_second_start_restarts_the_frame() {
        let out = feed(&mut codec("<", ">", 16), &[b"<ab<c", b"d>"]);
        assert_eq!(
            out,
            vec![Outcome::Truncated { bytes: 2 }, Outcome::frame("cd")]
        );
    }

    #[test]
    fn same_start_and_end_alternate() {
        let out = feed(&mut codec("|", "|", 16), &[b"|a||b|"]);
        assert_eq!(out, Outcome::frames(&["a", "b"]));
    }

    #[test]
    fn end_wins_over_a_start_that_extends_it() {
        // "ab" is both an end and the beginning of the start "abc".
        let out = feed(&mut codec("abc", "ab", 16), &[b"abcx", b"a", b"bc"]);
        assert_eq!(
            out,
            vec![Outcome::frame("x"), Outcome::Unframed { bytes: 1 }]
        );
    }

    #[test]
    fn start_waits_for_a_longer_end_to_be_decided() {
        // "<" could begin the end "<<": only the next byte tells.
        let mut whole = codec("<", "<<", 16);
        let mut split = whole.clone();
        let expected = Outcome::frames(&["a", "b"]);
        assert_eq!(feed(&mut whole, &[b"<a<<<b<<"]), expected);
        assert_eq!(feed(&mut split, &[b"<a<", b"<", b"<b<", b"<"]), expected);
    }

    #[test]
    fn exactly_at_the_limit_is_accepted() {
        let out = feed(&mut codec("[[", "]]", 4), &[b"[[abcd]", b"]"]);
        assert_eq!(out, Outcome::frames(&["abcd"]));
    }

    #[test]
    fn one_over_the_limit_is_discarded_then_decoding_resumes() {
        let out = feed(&mut codec("<", ">", 4), &[b"<abcde><ok>"]);
        assert_eq!(
            out,
            vec![
                Outcome::TooLarge { length: 5, max: 4 },
                Outcome::frame("ok")
            ]
        );
    }

    #[test]
    fn oversize_frame_across_many_reads_is_reported_once() {
        let mut codec = DelimitedCodec::new(STX, ETX).with_max_length(4);
        let mut buf = BytesMut::new();
        let mut outcomes = Vec::new();
        for chunk in [
            &b"\x020123"[..],
            b"4567",
            b"89",
            b"",
            b"0123\x03",
            b"\x02fine\x03",
        ] {
            buf.extend_from_slice(chunk);
            while let Some(decoded) = codec.decode(&mut buf).unwrap() {
                outcomes.push(Outcome::from(decoded));
            }
            assert!(buf.len() <= 4 + 1, "buffer grew to {}", buf.len());
        }
        assert_eq!(
            outcomes,
            vec![
                Outcome::TooLarge { length: 8, max: 4 },
                Outcome::frame("fine")
            ]
        );
    }

    #[test]
    fn a_start_ends_an_oversize_frame() {
        let out = feed(&mut codec("<", ">", 2), &[b"<abc", b"def<ok>"]);
        assert_eq!(
            out,
            vec![
                Outcome::TooLarge { length: 3, max: 2 },
                Outcome::frame("ok")
            ]
        );
    }

    #[test]
    fn eof_mid_frame_is_truncated_not_delivered() {
        let out = feed(&mut codec("<", ">", 16), &[b"<one><tw", b"o"]);
        assert_eq!(
            out,
            vec![Outcome::frame("one"), Outcome::Truncated { bytes: 3 }]
        );
        let out = feed(&mut codec("<", ">", 16), &[b"<"]);
        assert_eq!(out, vec![Outcome::Truncated { bytes: 0 }]);
    }

    #[test]
    fn eof_after_junk_reports_it_once() {
        let out = feed(&mut codec("<<", ">", 16), &[b"ab", b"<"]);
        assert_eq!(out, vec![Outcome::Unframed { bytes: 2 }]);
        let out = feed(&mut codec("<<", ">", 16), &[b"<"]);
        assert_eq!(out, vec![Outcome::Unframed { bytes: 1 }]);
    }

    #[test]
    fn eof_while_discarding_reports_nothing_more() {
        let out = feed(&mut codec("<", ">", 2), &[b"<abcdef"]);
        assert_eq!(out, vec![Outcome::TooLarge { length: 6, max: 2 }]);
    }

    #[test]
    fn encode_wraps_the_message() {
        let mut dst = BytesMut::new();
        let mut codec = DelimitedCodec::new(STX, ETX);
        codec.encode("hi", &mut dst).unwrap();
        codec.encode(Bytes::from_static(b""), &mut dst).unwrap();
        assert_eq!(&dst[..], b"\x02hi\x03\x02\x03");
    }

    #[test]
    #[should_panic(expected = "at least one byte")]
    fn empty_start_panics() {
        let _ = DelimitedCodec::new("", ">");
    }

    #[test]
    #[should_panic(expected = "at least one byte")]
    fn empty_end_panics() {
        let _ = DelimitedCodec::new("<", "");
    }
}
