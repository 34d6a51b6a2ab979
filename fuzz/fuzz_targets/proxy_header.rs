#![no_main]
//! The PROXY protocol header reader, fed any bytes as a stream: it must not
//! panic, and must never read past the longest header there is (what
//! follows a header is the client's).

use libfuzzer_sys::fuzz_target;

/// v2: 16 fixed bytes and at most 65,535 more.
const LONGEST: usize = 16 + 65_535;

fuzz_target!(|data: &[u8]| {
    let left = flexi_socket::__private::proxy_header_leftover(data);
    let read = data.len() - left;
    assert!(read <= LONGEST, "read {read} bytes");
    if data.starts_with(b"PROXY ") {
        assert!(read <= 107, "a v1 header is at most 107 bytes, read {read}");
    }
});
