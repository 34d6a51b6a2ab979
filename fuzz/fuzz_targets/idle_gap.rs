#![no_main]
mod harness;

use std::time::Duration;

use flexi_socket::framing::IdleGapCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    harness::feed(IdleGapCodec::new(Duration::from_millis(10)).with_max_length(50), 50 + 64, data);
});
