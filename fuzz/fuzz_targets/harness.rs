//! Feeds fuzz input to a decoder in chunks whose sizes the input also
//! chooses, the way reads arrive from a socket, and checks the invariants
//! every decoder promises: no panic, no error (problems are items), and a
//! buffer that never holds more than the limit, the delimiter and one read.

use bytes::BytesMut;
use flexi_socket::framing::Decoded;
use tokio_util::codec::Decoder;

/// `bound` is the most a drained buffer may hold before the next read.
pub fn feed<D>(mut decoder: D, bound: usize, data: &[u8])
where
    D: Decoder<Item = Decoded, Error = std::io::Error>,
{
    let Some((&seed, mut rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(seed % 64) + 1;
    let mut buffer = BytesMut::new();
    while !rest.is_empty() {
        let (now, later) = rest.split_at(chunk.min(rest.len()));
        buffer.extend_from_slice(now);
        rest = later;
        while let Some(decoded) = decoder.decode(&mut buffer).expect("recoverable problems are items") {
            check(&decoded);
        }
        assert!(buffer.len() <= bound, "{} bytes buffered, bound {bound}", buffer.len());
    }
    // A decoder must make progress at EOF: bounded by the input size.
    for _ in 0..=data.len() + 1 {
        match decoder.decode_eof(&mut buffer).expect("recoverable problems are items") {
            Some(decoded) => check(&decoded),
            None => return,
        }
    }
    panic!("decode_eof kept yielding items");
}

fn check(decoded: &Decoded) {
    if let Decoded::Discarded(error) = decoded {
        // Only the two recoverable kinds may be reported.
        let text = error.to_string();
        assert!(text.contains("discarded") || text.contains("not delivered"), "{text}");
    }
}
