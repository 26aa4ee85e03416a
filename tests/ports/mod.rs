//! Free TCP ports for tests that start servers on 127.0.0.1.
//!
//! A port is found by binding port 0 and letting it go, so it is only "free
//! a moment ago". Two calls in one process could get the same port back
//! (the kernel may pick it again once released), and two servers told to
//! listen on it would then share it: an nginx config with two `server`s on
//! one address serves both from the first, with the first one's settings
//! (a CI run failed so). [`free_port`] never returns a port twice in one
//! process.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashSet;
use std::sync::Mutex;

/// A TCP port on 127.0.0.1 that was free a moment ago and that no earlier
/// call in this process returned; always of 5 digits (`SERVER_PORT` is part
/// of a classic uwsgi vars block, and the interop tests that build a block of
/// an exact size need its length to be the same for every server).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port >= 10_000
            && GIVEN
                .lock()
                .unwrap()
                .get_or_insert_with(HashSet::new)
                .insert(port)
        {
            return port;
        }
    }
}
