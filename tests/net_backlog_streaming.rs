//! A hostile peer against a busy app (see `backlog_common`): 4 KiB DATA
//! frames on three streams whose handlers have not read their bodies yet,
//! each in one read with 120 KiB that the app consumes. Those reads go
//! into the driver's streaming buffers (192 KiB), and each 4 KiB payload
//! used to keep its buffer alive: 48 times its size, about 35 MiB for the
//! 180 frames the windows allow here. A payload cut from a buffer more
//! than 8 times its size is now copied out unless its reader is waiting
//! for it (`src/net/driver.rs`); `net_backlog_streams.rs` is the same
//! with one frame on each of many streams.
#![cfg(all(feature = "net", target_os = "linux"))]

mod backlog_common;

use backlog_common::{run_within_window, Attack};

#[tokio::test]
async fn middling_frames_behind_unread_bodies_do_not_pin_streaming_buffers() {
    run_within_window(Attack {
        held_streams: 3,
        // 240 KiB per stream: within the default stream window (256 KiB),
        // 720 KiB in all, within the connection's (1 MiB) with room for
        // the echo.
        frames_per_stream: 60,
        frame_len: 4 * 1024,
        filler: 120 * 1024,
    })
    .await;
}
