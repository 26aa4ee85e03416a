//! A hostile peer against a busy app (see `backlog_common`): one-byte DATA
//! frames on a stream whose handler has not read its body yet, each in one
//! read with a DATA frame of nearly 8 KiB that the app consumes. Each tiny
//! payload used to keep its whole read buffer alive (about 8 KiB for one
//! byte of window): the 20,000 of this test held some 160 MiB. Small
//! payloads that arrive behind unread ones are now gathered
//! (`src/net/recvq.rs`), and memory stays near what the window allows.
#![cfg(all(feature = "net", target_os = "linux"))]

mod backlog_common;

use backlog_common::{run, Attack};

#[tokio::test]
async fn tiny_frames_behind_an_unread_body_do_not_pin_read_buffers() {
    const FRAMES: usize = 20_000;
    let grown = run(Attack {
        held_streams: 1,
        frames_per_stream: FRAMES,
        frame_len: 1,
        // With its frame header and the tiny frame's, under the driver's
        // 8 KiB read: both frames come in one read into the stack buffer.
        filler: 7_900,
    })
    .await;
    println!(
        "{FRAMES} one-byte frames waiting behind an unread body: resident memory grew {grown} KiB"
    );
    // Pinned, they took about 8 KiB each (160 MiB); gathered, about their
    // window. 32 MiB leaves room for the allocator's own slack.
    assert!(
        grown < 32 * 1024,
        "{FRAMES} one-byte frames cost {grown} KiB of resident memory"
    );
}
