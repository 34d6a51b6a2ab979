//! The harness the codec unit tests share, and property tests over every framing.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

use super::{Decoded, FrameDecoder, FrameEncoder, Framing};
use crate::error::Error;

/// A [`Decoded`] that can be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Frame(Vec<u8>),
    TooLarge {
        length: usize,
        max: usize,
    },
    Truncated {
        bytes: usize,
    },
    Unframed {
        bytes: usize,
    },
    /// An unrecoverable error, or a `Discarded` with an unexpected error.
    Failed(String),
}

impl Outcome {
    pub(super) fn frame(text: &str) -> Self {
        Outcome::Frame(text.as_bytes().to_vec())
    }

    pub(super) fn frames(texts: &[&str]) -> Vec<Self> {
        texts.iter().map(|text| Outcome::frame(text)).collect()
    }

    /// The outcome without its byte counts, which depend on how the input was
    /// split: an oversize frame is reported with the bytes seen so far.
    fn kind(&self) -> Outcome {
        match self {
            Outcome::TooLarge { max, .. } => Outcome::TooLarge {
                length: 0,
                max: *max,
            },
            Outcome::Truncated { .. } => Outcome::Truncated { bytes: 0 },
            Outcome::Unframed { .. } => Outcome::Unframed { bytes: 0 },
            other => other.clone(),
        }
    }
}

impl From<Decoded> for Outcome {
    fn from(decoded: Decoded) -> Self {
        match decoded {
            Decoded::Frame(frame) => Outcome::Frame(frame.to_vec()),
            Decoded::Discarded(error) => match *error {
                Error::FrameTooLarge { length, max } => Outcome::TooLarge { length, max },
                Error::FrameTruncated { bytes } => Outcome::Truncated { bytes },
                Error::Unframed { bytes } => Outcome::Unframed { bytes },
                other => Outcome::Failed(other.to_string()),
            },
        }
    }
}

/// Feeds `chunks` one read at a time, then EOF, as a connection would.
pub(super) fn feed<D>(codec: &mut D, chunks: &[&[u8]]) -> Vec<Outcome>
where
    D: Decoder<Item = Decoded, Error = io::Error>,
{
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(decoded) = codec.decode(&mut buf).unwrap() {
            outcomes.push(decoded.into());
        }
    }
    while let Some(decoded) = codec.decode_eof(&mut buf).unwrap() {
        outcomes.push(decoded.into());
    }
    outcomes
}

/// A framing with small limits, so that random input hits every path.
#[derive(Clone, Debug)]
enum Case {
    Lines(usize),
    Separator(Vec<u8>, usize),
    Delimited {
        start: Vec<u8>,
        end: Vec<u8>,
        max: usize,
    },
    Fixed {
        len: usize,
        trim: bool,
    },
    LengthPrefixed {
        prefix: usize,
        big: bool,
        includes: bool,
        max: usize,
    },
    Eof(usize),
    IdleGap(usize),
    /// tokio-util's `LengthDelimitedCodec` with a 1-byte header.
    Custom,
}

impl Case {
    fn framing(&self) -> Framing {
        match self {
            Case::Lines(max) => Framing::lines().max_length(*max),
            Case::Separator(separator, max) => {
                Framing::separator(separator.clone()).max_length(*max)
            }
            Case::Delimited { start, end, max } => {
                Framing::delimited(start.clone(), end.clone()).max_length(*max)
            }
            Case::Fixed { len, trim } => Framing::fixed(*len).trim_padding(*trim),
            Case::LengthPrefixed {
                prefix,
                big,
                includes,
                max,
            } => {
                let framing = Framing::length_prefixed()
                    .prefix_len(*prefix)
                    .length_includes_prefix(*includes)
                    .max_length(*max);
                if *big {
                    framing.big_endian()
                } else {
                    framing.little_endian()
                }
            }
            Case::Eof(max) => Framing::eof().max_length(*max),
            Case::IdleGap(max) => Framing::idle_gap(Duration::from_millis(1)).max_length(*max),
            Case::Custom => Framing::custom(|| {
                LengthDelimitedCodec::builder()
                    .length_field_length(1)
                    .new_codec()
            }),
        }
    }

    /// Most bytes a drained decoder may hold: the limit plus the delimiter.
    fn bound(&self) -> usize {
        match self {
            Case::Lines(max) => max + 2,
            Case::Separator(separator, max) => max + separator.len(),
            Case::Delimited { start, end, max } => max + start.len().max(end.len()),
            Case::Fixed { len, .. } => *len,
            Case::LengthPrefixed { prefix, max, .. } => max + prefix,
            Case::Eof(max) | Case::IdleGap(max) => *max,
            Case::Custom => 255 + 1,
        }
    }

    /// What decoding the encoded `message` gives back, or `None` when the
    /// message cannot travel intact in this framing (it holds the delimiter,
    /// or is over the limit).
    fn roundtrip(&self, message: &[u8]) -> Option<Vec<u8>> {
        let fits = |max: usize| message.len() <= max;
        match self {
            Case::Lines(max) => {
                (fits(*max) && !message.contains(&b'\n') && message.last() != Some(&b'\r'))
                    .then(|| message.to_vec())
            }
            Case::Separator(separator, max) => {
                let mut wire = message.to_vec();
                wire.extend_from_slice(separator);
                let first = wire.windows(separator.len()).position(|w| w == separator);
                (fits(*max) && first == Some(message.len())).then(|| message.to_vec())
            }
            Case::Delimited { start, end, max } => {
                // Conservative: nothing in the message or the end may match,
                // or begin, either sequence before the end itself.
                let mut rest = message.to_vec();
                rest.extend_from_slice(end);
                let clean = (0..message.len()).all(|at| {
                    let tail = &rest[at..];
                    [start, end].into_iter().all(|sequence| {
                        let n = tail.len().min(sequence.len());
                        tail[..n] != sequence[..n]
                    })
                });
                (fits(*max) && clean).then(|| message.to_vec())
            }
            Case::Fixed { len, trim } => {
                let mut frame = message.to_vec();
                frame.resize(*len, b' ');
                (fits(*len) && !(*trim && message.last() == Some(&b' ')))
                    .then(|| if *trim { message.to_vec() } else { frame })
            }
            Case::LengthPrefixed { max, .. } => fits(*max).then(|| message.to_vec()),
            Case::Custom => fits(255).then(|| message.to_vec()),
            // One message per stream or per silence: tested on their own.
            Case::Eof(_) | Case::IdleGap(_) => None,
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        (0usize..12).prop_map(Case::Lines),
        (vec(select(&b"ab\n"[..]), 1..=3), 0usize..12)
            .prop_map(|(separator, max)| Case::Separator(separator, max)),
        (
            vec(select(&b"ab\n"[..]), 1..=3),
            vec(select(&b"ab\r"[..]), 1..=3),
            0usize..12
        )
            .prop_map(|(start, end, max)| Case::Delimited { start, end, max }),
        (1usize..8, any::<bool>()).prop_map(|(len, trim)| Case::Fixed { len, trim }),
        (
            select(&[1usize, 2, 3, 4, 8][..]),
            any::<bool>(),
            any::<bool>(),
            0usize..24
        )
            .prop_map(|(prefix, big, includes, max)| Case::LengthPrefixed {
                prefix,
                big,
                includes,
                max
            }),
        (0usize..24).prop_map(Case::Eof),
        (0usize..12).prop_map(Case::IdleGap),
        Just(Case::Custom),
    ]
}

/// Bytes rich in delimiters and small length headers.
fn input() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![select(&b"ab\n\r \0\x01\x02\x05"[..]), any::<u8>()],
        0..160,
    )
}

/// `input` cut at the given points.
fn split<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
    points.sort_unstable();
    points.push(input.len());
    let mut start = 0;
    points
        .into_iter()
        .map(|end| {
            let chunk = &input[start..end];
            start = end;
            chunk
        })
        .collect()
}

/// Runs a connection's decoder over `chunks` then EOF, checking after every
/// read that the decoder keeps at most `bound` bytes. Where the buffer is
/// empty and the decoder fresh, it goes on with a new decoder, as a resting
/// connection does: how the input is split decides where, so the tests
/// that split it check that a fresh decoder decodes as a new one.
fn run(framing: &Framing, chunks: &[&[u8]], bound: usize) -> Vec<Outcome> {
    let mut decoder = framing.decoder();
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if buf.is_empty() {
                // `decode` does not ask a built-in codec about no bytes: it
                // must make nothing of them and change nothing.
                let before = format!("{decoder:?}");
                if let Some(decoded) = decoder.decode_builtin_in_full(&mut buf) {
                    let decoded = decoded.map(|d| d.map(Outcome::from));
                    assert!(
                        matches!(decoded, Ok(None)),
                        "{framing:?} made {decoded:?} of no bytes"
                    );
                    assert_eq!(
                        before,
                        format!("{decoder:?}"),
                        "{framing:?} changed on no bytes"
                    );
                }
            }
            match decoder.decode(&mut buf) {
                Ok(Some(decoded)) => outcomes.push(decoded.into()),
                Ok(None) => break,
                Err(err) => {
                    outcomes.push(Outcome::Failed(err.to_string()));
                    return outcomes;
                }
            }
        }
        assert!(
            buf.len() <= bound,
            "{} bytes buffered, bound {bound}",
            buf.len()
        );
        if buf.is_empty() && decoder.is_fresh() {
            decoder = framing.decoder();
        }
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(decoded)) => outcomes.push(decoded.into()),
            Ok(None) => return outcomes,
            Err(err) => {
                outcomes.push(Outcome::Failed(err.to_string()));
                return outcomes;
            }
        }
    }
}

fn kinds(outcomes: &[Outcome]) -> Vec<Outcome> {
    outcomes.iter().map(Outcome::kind).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn splitting_the_input_does_not_change_the_outcomes(
        case in case(),
        input in input(),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let framing = case.framing();
        let whole = run(&framing, &[&input], case.bound());
        let pieces = run(&framing, &split(&input, &cuts), case.bound());
        prop_assert_eq!(kinds(&whole), kinds(&pieces));
    }

    #[test]
    fn byte_by_byte_gives_the_same_outcomes(case in case(), input in input()) {
        let framing = case.framing();
        let whole = run(&framing, &[&input], case.bound());
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(kinds(&whole), kinds(&run(&framing, &bytes, case.bound())));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        case in case(),
        input in vec(any::<u8>(), 0..300),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        run(&case.framing(), &split(&input, &cuts), case.bound());
    }

    #[test]
    fn encode_then_decode_roundtrips(
        case in case(),
        messages in vec(vec(select(&b"ab \r\n\0\x01"[..]), 0..30), 0..8),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let framing = case.framing();
        let encoder = framing.encoder();
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for message in &messages {
            if let Some(decoded) = case.roundtrip(message) {
                encoder.encode(message, &mut wire).unwrap();
                expected.push(Outcome::Frame(decoded));
            }
        }
        let out = run(&framing, &split(&wire, &cuts), case.bound());
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn eof_framing_delivers_the_stream_or_reports_it(
        max in 0usize..40,
        input in vec(any::<u8>(), 0..60),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let out = run(&Framing::eof().max_length(max), &split(&input, &cuts), max);
        let expected = match input.len() {
            0 => vec![],
            len if len <= max => vec![Outcome::Frame(input.clone())],
            len => vec![Outcome::TooLarge { length: len, max }],
        };
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn raw_framing_delivers_every_byte_in_bounded_pieces(
        max in 1usize..16,
        input in vec(any::<u8>(), 0..100),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let out = run(&Framing::raw().max_length(max), &split(&input, &cuts), 0);
        let mut joined = Vec::new();
        for outcome in out {
            let Outcome::Frame(frame) = outcome else {
                return Err(TestCaseError::fail(format!("unexpected {outcome:?}")));
            };
            prop_assert!(!frame.is_empty() && frame.len() <= max);
            joined.extend(frame);
        }
        prop_assert_eq!(joined, input);
    }

    #[test]
    fn idle_gap_framing_delivers_one_message_per_silence(
        max in 0usize..12,
        bursts in vec(vec(any::<u8>(), 0..16), 0..6),
    ) {
        let framing = Framing::idle_gap(Duration::from_millis(1)).max_length(max);
        let mut decoder = framing.decoder();
        prop_assert_eq!(decoder.idle_gap(), Some(Duration::from_millis(1)));
        let (mut buf, mut out, mut expected) = (BytesMut::new(), Vec::new(), Vec::new());
        for burst in &bursts {
            for byte in burst {
                buf.extend_from_slice(&[*byte]);
                while let Some(decoded) = decoder.decode(&mut buf).unwrap() {
                    out.push(Outcome::from(decoded));
                }
                prop_assert!(buf.len() <= max);
            }
            // The connection task only times the silence when asked to.
            if decoder.wants_idle_timer(&buf) {
                while let Some(decoded) = decoder.decode_idle(&mut buf).unwrap() {
                    out.push(Outcome::from(decoded));
                }
            }
            match burst.len() {
                0 => {}
                len if len <= max => expected.push(Outcome::Frame(burst.clone())),
                _ => expected.push(Outcome::TooLarge { length: max + 1, max }),
            }
        }
        prop_assert_eq!(out, expected);
    }
}

#[test]
fn framing_and_its_halves_can_cross_tasks() {
    fn shared<T: Clone + Send + Sync + std::fmt::Debug>() {}
    fn owned<T: Send + std::fmt::Debug>() {}
    shared::<Framing>();
    shared::<FrameEncoder>();
    owned::<FrameDecoder>();
}

#[test]
fn a_new_built_in_decoder_is_fresh_and_a_custom_one_never_is() {
    for framing in [
        Framing::lines(),
        Framing::separator("\r\n"),
        Framing::delimited("<", ">"),
        Framing::fixed(4),
        Framing::length_prefixed(),
        Framing::eof(),
        Framing::raw(),
        Framing::idle_gap(Duration::from_millis(1)),
    ] {
        assert!(framing.decoder().is_fresh(), "{framing:?}");
    }
    let custom = Case::Custom.framing();
    assert!(!custom.decoder().is_fresh());
}

#[test]
fn a_decoder_is_not_fresh_while_it_holds_part_of_a_frame() {
    // Dropping an oversize line, its bytes gone from the buffer.
    let mut lines = Framing::lines().max_length(4).decoder();
    let mut buf = BytesMut::from(&b"too long"[..]);
    assert!(matches!(lines.decode(&mut buf), Ok(Some(_))));
    assert!(buf.is_empty());
    assert!(!lines.is_fresh());
    buf.extend_from_slice(b"tail\nok\n");
    assert!(matches!(lines.decode(&mut buf), Ok(Some(_))));
    assert!(lines.is_fresh());
    // A header taken, its payload to come.
    let mut prefixed = Framing::length_prefixed().decoder();
    let mut buf = BytesMut::from(&b"\0\0\0\x05"[..]);
    assert!(matches!(prefixed.decode(&mut buf), Ok(None)));
    assert!(!prefixed.is_fresh());
}

#[test]
fn only_idle_gap_framing_has_a_gap() {
    let mut decoder = Framing::lines().decoder();
    assert_eq!(decoder.idle_gap(), None);
    let mut buf = BytesMut::from(&b"pending"[..]);
    assert!(decoder.decode_idle(&mut buf).unwrap().is_none());
    assert_eq!(&buf[..], b"pending");
}

#[test]
fn only_idle_gap_framing_wants_an_idle_timer() {
    let pending = BytesMut::from(&b"pending"[..]);
    assert!(!Framing::lines().decoder().wants_idle_timer(&pending));
    assert!(!Framing::raw().decoder().wants_idle_timer(&pending));
    let custom = Framing::custom(LengthDelimitedCodec::new);
    assert!(!custom.decoder().wants_idle_timer(&pending));
}

#[test]
fn idle_gap_wants_a_timer_while_bytes_are_pending_or_a_burst_is_dropped() {
    let mut decoder = Framing::idle_gap(Duration::from_millis(1))
        .max_length(2)
        .decoder();
    let mut buf = BytesMut::new();
    assert!(!decoder.wants_idle_timer(&buf), "nothing to end");

    buf.extend_from_slice(b"ab");
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    assert!(decoder.wants_idle_timer(&buf), "a burst is pending");
    let decoded = decoder.decode_idle(&mut buf).unwrap();
    assert_eq!(decoded.map(Outcome::from), Some(Outcome::frame("ab")));
    assert!(!decoder.wants_idle_timer(&buf), "the burst was delivered");

    buf.extend_from_slice(b"abc");
    let decoded = decoder.decode(&mut buf).unwrap();
    assert_eq!(
        decoded.map(Outcome::from),
        Some(Outcome::TooLarge { length: 3, max: 2 })
    );
    assert!(buf.is_empty());
    assert!(decoder.wants_idle_timer(&buf), "only a gap ends the drop");
    assert!(decoder.decode_idle(&mut buf).unwrap().is_none());
    assert!(!decoder.wants_idle_timer(&buf), "the drop is over");

    buf.extend_from_slice(b"ok");
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    let decoded = decoder.decode_idle(&mut buf).unwrap();
    assert_eq!(decoded.map(Outcome::from), Some(Outcome::frame("ok")));
}

#[test]
fn default_framing_is_lines() {
    let mut buf = BytesMut::from(&b"a\r\n"[..]);
    let decoded = Framing::default().decoder().decode(&mut buf).unwrap();
    assert_eq!(decoded.map(Outcome::from), Some(Outcome::frame("a")));
}

#[test]
fn encoder_clones_encode_alike_and_refusals_are_encode_errors() {
    let encoder = Framing::fixed(3).pad(b'.').encoder();
    let mut dst = BytesMut::new();
    encoder.clone().encode(b"a", &mut dst).unwrap();
    assert_eq!(&dst[..], b"a..");
    let err = encoder.encode(b"abcd", &mut dst).unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err}");
}

#[test]
fn corrupt_length_header_is_an_unrecoverable_framing_error() {
    let framing = Framing::length_prefixed()
        .prefix_len(1)
        .length_includes_prefix(true);
    let err = framing
        .decoder()
        .decode(&mut BytesMut::from(&b"\0"[..]))
        .unwrap_err();
    assert!(matches!(*err, Error::Framing(_)), "{err}");
}

#[test]
#[should_panic(
    expected = "max_length does not apply to Framing::fixed(4): the frame length is the limit"
)]
fn max_length_on_fixed_framing_panics() {
    let _ = Framing::fixed(4).max_length(1);
}

#[test]
#[should_panic(
    expected = "max_length does not apply to Framing::custom(..): a custom codec enforces its own limit"
)]
fn max_length_on_custom_framing_panics() {
    let _ = Framing::custom(LengthDelimitedCodec::new).max_length(1);
}

#[test]
#[should_panic(expected = "applies to Framing::fixed(..) only, not to Framing::lines()")]
fn fixed_options_on_another_framing_panic() {
    let _ = Framing::lines().pad(b'0');
}

#[test]
#[should_panic(expected = "applies to Framing::length_prefixed() only")]
fn length_prefix_options_on_another_framing_panic() {
    let _ = Framing::raw().little_endian();
}

/// Decodes `chunks` then EOF like [`run`]; after each read that left an
/// unfinished frame, notes what [`FrameDecoder::pending_frame`] said of it,
/// with the number of outcomes before it.
fn run_noting_pending(
    framing: &Framing,
    chunks: &[&[u8]],
) -> (Vec<Outcome>, Vec<(usize, Vec<u8>)>) {
    let mut decoder = framing.decoder();
    let mut buf = BytesMut::new();
    let (mut outcomes, mut pending) = (Vec::new(), Vec::new());
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(decoded)) => outcomes.push(Outcome::from(decoded)),
                Ok(None) => break,
                Err(_) => return (outcomes, pending),
            }
        }
        let start = decoder.pending_frame(&buf);
        if !start.is_empty() {
            pending.push((outcomes.len(), start.to_vec()));
        }
    }
    while let Ok(Some(decoded)) = decoder.decode_eof(&mut buf) {
        outcomes.push(Outcome::from(decoded));
    }
    (outcomes, pending)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What a classifier may decide on early is how the next frame starts,
    /// if that frame is delivered at all.
    #[test]
    fn a_pending_frame_is_the_start_of_the_next_frame(
        case in case(),
        input in input(),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let (outcomes, pending) = run_noting_pending(&case.framing(), &split(&input, &cuts));
        for (before, start) in pending {
            if let Some(Outcome::Frame(frame)) = outcomes.get(before) {
                prop_assert!(
                    frame.starts_with(&start),
                    "{:?}: {:?} does not start {:?}", case, start, frame
                );
            }
        }
    }
}
