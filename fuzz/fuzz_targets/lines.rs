#![no_main]
mod harness;

use flexi_socket::framing::LineCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Limit 32 + "\r\n" + one read of at most 64 bytes.
    harness::feed(LineCodec::new().with_max_length(32), 32 + 2 + 64, data);
});
