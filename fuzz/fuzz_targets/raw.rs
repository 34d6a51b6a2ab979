#![no_main]
mod harness;

use flexi_socket::framing::RawCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    harness::feed(RawCodec::new().with_max_length(16), 16 + 64, data);
});
