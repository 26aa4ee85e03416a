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

use backlog_common::{run, Attack};

#[tokio::test]
async fn middling_frames_behind_unread_bodies_do_not_pin_streaming_buffers() {
    let attack = Attack {
        held_streams: 3,
        // 240 KiB per stream: within the default stream window (256 KiB),
        // 720 KiB in all, within the connection's (1 MiB) with room for
        // the echo.
        frames_per_stream: 60,
        frame_len: 4 * 1024,
        filler: 120 * 1024,
    };
    let held_kib =
        (attack.held_streams * attack.frames_per_stream * attack.frame_len / 1024) as u64;
    let grown = run(attack).await;
    println!("{held_kib} KiB in 4 KiB frames waiting behind unread bodies: resident memory grew {grown} KiB");
    // Pinned, each frame kept a streaming read (about 124 KiB written of
    // 192 KiB): over 20 MiB. Copied, about what waits, plus the
    // allocator's slack.
    assert!(
        grown < held_kib + 4 * 1024,
        "{held_kib} KiB of waiting 4 KiB frames cost {grown} KiB of resident memory"
    );
}
