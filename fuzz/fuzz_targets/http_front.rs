//! The HTTP front's request path on arbitrary bytes: one client
//! connection's worth of HTTP/1.1 (heads, chunked and sized bodies,
//! pipelining, garbage) through hyper's server, the front's connection
//! wrapper, its framing/Host/target checks, the request body with its
//! limit and fault record, the conversion to a uwire request head and the
//! environ. See `uwire::proxy::fuzzing` for the checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uwire::proxy::fuzzing::http1_connection(data);
});
