#![no_main]
mod harness;

use flexi_socket::framing::EofCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    harness::feed(EofCodec::new().with_max_length(100), 100 + 64, data);
});
