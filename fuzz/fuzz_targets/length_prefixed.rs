#![no_main]
mod harness;

use flexi_socket::framing::LengthPrefixedCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two-byte big-endian headers can declare far more than the 100-byte limit.
    let codec = LengthPrefixedCodec::new().with_prefix_len(2).with_max_length(100);
    harness::feed(codec, 100 + 2 + 64, data);
});
