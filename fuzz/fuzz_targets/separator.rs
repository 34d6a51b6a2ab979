#![no_main]
mod harness;

use flexi_socket::framing::SeparatorCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A three-byte separator so partial matches across reads get exercised.
    let codec = SeparatorCodec::new(&b"\r\n."[..]).with_max_length(32);
    harness::feed(codec, 32 + 3 + 64, data);
});
