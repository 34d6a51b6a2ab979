#![no_main]
mod harness;

use flexi_socket::framing::FixedLengthCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    harness::feed(FixedLengthCodec::new(7), 7 + 64, data);
});
