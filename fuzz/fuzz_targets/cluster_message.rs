#![no_main]
//! The cluster message decoder (feature `nats`), fed any bytes as another
//! node could send them: it must not panic, and whatever decodes must
//! encode back to a payload that decodes to the same message.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flexi_socket::__private::cluster_message_round_trip(data);
});
