//! A hostile peer against a busy app (see `backlog_common`): one 4 KiB DATA
//! frame on each of 120 streams whose handlers have not read their bodies
//! yet, each in one read with 120 KiB that the app consumes. Those reads go
//! into the driver's streaming buffers (192 KiB), and a payload that nobody
//! waits for used to keep its buffer alive, even as the first of its
//! stream: about 15 MiB for 480 KiB of window. A payload cut from a buffer
//! more than 8 times its size is now copied out unless its reader is
//! waiting for it (`src/net/driver.rs`).
#![cfg(all(feature = "net", target_os = "linux"))]

mod backlog_common;

use backlog_common::{run_within_window, Attack};

#[tokio::test]
async fn first_frames_of_many_unread_bodies_do_not_pin_streaming_buffers() {
    run_within_window(Attack {
        // Within the default 128 concurrent streams; 480 KiB in all, within
        // the connection's window (1 MiB) with room for the echo.
        held_streams: 120,
        frames_per_stream: 1,
        frame_len: 4 * 1024,
        filler: 120 * 1024,
    })
    .await;
}
