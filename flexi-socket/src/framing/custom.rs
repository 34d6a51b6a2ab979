//! A user's own tokio-util codec, erased so every connection can hold one.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Decoded;
use super::codec::Decoding;
use crate::error::Error;
use crate::error::panic_message;
use crate::sync;

/// What the runtime needs of a user codec; errors are already text, as the
/// connection only reports them.
trait ErasedCodec: Send {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, String>;
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, String>;
    fn encode(&mut self, message: Bytes, dst: &mut BytesMut) -> Result<(), String>;
}

impl<C> ErasedCodec for C
where
    C: Decoder + Encoder<Bytes> + Send,
    <C as Decoder>::Item: Into<Bytes>,
    <C as Decoder>::Error: fmt::Display,
    <C as Encoder<Bytes>>::Error: fmt::Display,
{
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
        Decoder::decode(self, buf)
            .map(|item| item.map(Into::into))
            .map_err(|err| err.to_string())
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
        Decoder::decode_eof(self, buf)
            .map(|item| item.map(Into::into))
            .map_err(|err| err.to_string())
    }

    fn encode(&mut self, message: Bytes, dst: &mut BytesMut) -> Result<(), String> {
        Encoder::encode(self, message, dst).map_err(|err| err.to_string())
    }
}

type MakeCodec = dyn Fn() -> Box<dyn ErasedCodec> + Send + Sync;

/// The user's codec factory, shared by every connection.
#[derive(Clone)]
pub(super) struct CustomFraming {
    make: Arc<MakeCodec>,
}

impl CustomFraming {
    pub(super) fn new<F, C>(make: F) -> Self
    where
        F: Fn() -> C + Send + Sync + 'static,
        C: Decoder + Encoder<Bytes> + Send + 'static,
        <C as Decoder>::Item: Into<Bytes>,
        <C as Decoder>::Error: fmt::Display,
        <C as Encoder<Bytes>>::Error: fmt::Display,
    {
        CustomFraming {
            make: Arc::new(move || Box::new(make()) as Box<dyn ErasedCodec>),
        }
    }

    pub(super) fn decoder(&self) -> CustomDecoder {
        CustomDecoder((self.make)())
    }

    pub(super) fn encoder(&self) -> CustomEncoder {
        CustomEncoder(Arc::new(Mutex::new((self.make)())))
    }
}

impl fmt::Debug for CustomFraming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomFraming")
    }
}

/// The decoding half of one connection. Its errors are unrecoverable: after a
/// failed decode the codec's position in the stream is unknown.
pub(super) struct CustomDecoder(Box<dyn ErasedCodec>);

impl CustomDecoder {
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Decoding {
        guarded(|| self.0.decode(buf))
    }

    pub(super) fn decode_eof(&mut self, buf: &mut BytesMut) -> Decoding {
        guarded(|| self.0.decode_eof(buf))
    }
}

/// Runs a custom codec's decode, which is user code: its panic becomes an
/// unrecoverable framing error, which costs its connection only.
fn guarded(decode: impl FnOnce() -> Result<Option<Bytes>, String>) -> Decoding {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(decoded) => decoded
            .map(|frame| frame.map(Decoded::Frame))
            .map_err(|reason| Box::new(Error::Framing(reason))),
        Err(payload) => Err(Box::new(Error::Framing(format!(
            "the codec panicked: {}",
            panic_message(&*payload)
        )))),
    }
}

impl fmt::Debug for CustomDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomDecoder")
    }
}

/// The encoding half of one connection, shared by all its senders; the lock
/// is held only while one message is encoded.
#[derive(Clone)]
pub(super) struct CustomEncoder(Arc<Mutex<Box<dyn ErasedCodec>>>);

impl CustomEncoder {
    pub(super) fn encode(&self, message: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        // A panic in another sender's encode leaves no invariant of ours broken.
        let mut codec = sync::lock(&self.0);
        codec
            .encode(Bytes::copy_from_slice(message), dst)
            .map_err(|reason| Error::Encode { reason })
    }
}

impl fmt::Debug for CustomEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomEncoder")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::{BytesCodec, LengthDelimitedCodec};

    #[test]
    fn frames_come_from_the_user_codec() {
        let framing = CustomFraming::new(|| {
            LengthDelimitedCodec::builder()
                .length_field_length(1)
                .new_codec()
        });
        let mut buf = BytesMut::from(&b"\x02hi\x00"[..]);
        let mut decoder = framing.decoder();
        assert!(matches!(decoder.decode(&mut buf), Ok(Some(Decoded::Frame(f))) if f == "hi"));
        assert!(matches!(decoder.decode(&mut buf), Ok(Some(Decoded::Frame(f))) if f.is_empty()));
        assert!(matches!(decoder.decode_eof(&mut buf), Ok(None)));
    }

    #[test]
    fn decoder_errors_are_unrecoverable_framing_errors() {
        let framing = CustomFraming::new(|| {
            LengthDelimitedCodec::builder()
                .length_field_length(1)
                .max_frame_length(2)
                .new_codec()
        });
        let mut buf = BytesMut::from(&b"\x05hello"[..]);
        let err = framing.decoder().decode(&mut buf).unwrap_err();
        assert!(
            matches!(*err, Error::Framing(ref text) if text.contains("frame size")),
            "{err}"
        );
    }

    #[test]
    fn eof_behaviour_is_the_user_codec_own() {
        let framing = CustomFraming::new(|| {
            LengthDelimitedCodec::builder()
                .length_field_length(1)
                .new_codec()
        });
        let mut buf = BytesMut::from(&b"\x05he"[..]);
        let err = framing.decoder().decode_eof(&mut buf).unwrap_err();
        assert!(matches!(*err, Error::Framing(_)), "{err}");
    }

    #[test]
    fn encoder_is_shared_and_errors_become_encode_errors() {
        let framing = CustomFraming::new(|| {
            LengthDelimitedCodec::builder()
                .length_field_length(1)
                .max_frame_length(3)
                .new_codec()
        });
        let encoder = framing.encoder();
        let clone = encoder.clone();
        let mut dst = BytesMut::new();
        encoder.encode(b"ab", &mut dst).unwrap();
        clone.encode(b"", &mut dst).unwrap();
        assert_eq!(&dst[..], b"\x02ab\x00");
        let err = clone.encode(b"abcd", &mut dst).unwrap_err();
        assert!(matches!(err, Error::Encode { .. }), "{err}");
    }

    #[test]
    fn make_is_called_for_each_half() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let framing = CustomFraming::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            BytesCodec::new()
        });
        let _decoder = framing.decoder();
        let _encoder = framing.encoder();
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
