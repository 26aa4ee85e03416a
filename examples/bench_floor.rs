//! The raw Unix-socket floors of `scripts/bench-ipc`: what two processes
//! can exchange over one Unix stream socket with no protocol at all, so the
//! uwire/1 numbers can be read as a fraction of the machine's limit.
//!
//! ```text
//! cargo run --release --example bench_floor -- [--seconds 2] [--cpus A,B] [MODE...]
//! ```
//!
//! Modes (64-byte messages, echoed by a second process):
//! * `pingpong`: one message in flight; a round trip per message;
//! * `perwrite`: 64 in flight, each side reads whatever has arrived and
//!   answers with one `write` per message (what a protocol that never
//!   coalesces its writes pays);
//! * `batched`: 64 in flight, each side reads whatever has arrived and
//!   answers with one `write` for all of it (the batching ceiling);
//! * `stream`: one direction, 64 KiB writes, bytes per second.
//!
//! Prints one JSON object per mode. Blocking std sockets and two processes
//! (this binary re-executes itself as the echo side), like the C program
//! the first floors were measured with; no async runtime in the way.
//!
//! `--cpus A,B` pins the measuring process to CPU `A` and the echo process
//! to CPU `B` (`A,A`: both on one CPU). Unpinned, the scheduler decides
//! where each side wakes up, and on a virtual machine a wake-up across
//! CPUs can cost several times one on the same CPU, so the ping-pong rate
//! then depends on where the two sides happened to land.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MSG: usize = 64;
const WINDOW: usize = 64;
const CHUNK: usize = 64 * 1024;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Pins the calling process (its one thread) to `cpu`.
fn pin(cpu: usize) -> Result<()> {
    // SAFETY: `set` is a plain bit set owned by this frame, initialized by
    // CPU_ZERO before use; sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// Parses `--cpus A,B`; both must be CPUs this process may run on (the
/// echo side would otherwise fail while this side waits for it).
fn parse_cpus(s: &str) -> Result<(usize, usize)> {
    let (a, b) = s.split_once(',').ok_or("--cpus A,B: two CPU numbers")?;
    let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
    // SAFETY: as in `pin`; sched_getaffinity fills `set`, CPU_ISSET reads it
    // (only below CPU_SETSIZE, checked first).
    let allowed = |cpu: usize| unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        cpu < libc::CPU_SETSIZE as usize
            && libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
            && libc::CPU_ISSET(cpu, &set)
    };
    for cpu in [a, b] {
        if !allowed(cpu) {
            return Err(format!("--cpus: CPU {cpu} is not one this process may use").into());
        }
    }
    Ok((a, b))
}

/// The echo side, run in the child process.
fn peer(path: &str, mode: &str) -> Result<()> {
    let mut s = UnixStream::connect(path)?;
    match mode {
        "pingpong" => {
            let mut m = [0u8; MSG];
            loop {
                if s.read_exact(&mut m).is_err() {
                    return Ok(());
                }
                s.write_all(&m)?;
            }
        }
        "perwrite" | "batched" => {
            let mut buf = vec![0u8; CHUNK];
            let mut carry = 0usize;
            loop {
                let n = s.read(&mut buf[carry..])?;
                if n == 0 {
                    return Ok(());
                }
                let have = carry + n;
                let whole = have / MSG * MSG;
                if mode == "batched" {
                    s.write_all(&buf[..whole])?;
                } else {
                    for m in buf[..whole].chunks(MSG) {
                        s.write_all(m)?;
                    }
                }
                buf.copy_within(whole..have, 0);
                carry = have - whole;
            }
        }
        "stream" => {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    s.write_all(b"k")?;
                    return Ok(());
                }
            }
        }
        other => Err(format!("unknown mode {other}").into()),
    }
}

/// Result of one mode: operations (messages or bytes) in `elapsed`.
struct Floor {
    ops: u64,
    elapsed: Duration,
}

fn pingpong(s: &mut UnixStream, limit: Duration) -> Result<Floor> {
    let mut m = [7u8; MSG];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < limit {
        s.write_all(&m)?;
        s.read_exact(&mut m)?;
        n += 1;
    }
    Ok(Floor {
        ops: n,
        elapsed: t.elapsed(),
    })
}

fn perwrite(s: &mut UnixStream, limit: Duration) -> Result<Floor> {
    window(s, limit, false)
}

fn batched(s: &mut UnixStream, limit: Duration) -> Result<Floor> {
    window(s, limit, true)
}

/// 64 messages in flight: each side reads whatever has arrived and sends
/// one message per whole message received, in one `write` per message or
/// in one `write` for all of them.
fn window(s: &mut UnixStream, limit: Duration, batch: bool) -> Result<Floor> {
    let out = vec![7u8; MSG * WINDOW];
    let mut buf = vec![0u8; CHUNK];
    let send = |s: &mut UnixStream, k: usize| -> std::io::Result<()> {
        if batch {
            s.write_all(&out[..k * MSG])
        } else {
            (0..k).try_for_each(|_| s.write_all(&out[..MSG]))
        }
    };
    let t = Instant::now();
    send(s, WINDOW)?;
    let (mut sent, mut done, mut carry) = (WINDOW as u64, 0u64, 0usize);
    while done < sent {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err("echo side closed".into());
        }
        let have = carry + n;
        let k = have / MSG;
        carry = have % MSG;
        done += k as u64;
        if k > 0 && t.elapsed() < limit {
            send(s, k)?;
            sent += k as u64;
        }
    }
    Ok(Floor {
        ops: done,
        elapsed: t.elapsed(),
    })
}

fn stream(s: &mut UnixStream, limit: Duration) -> Result<Floor> {
    let chunk = vec![7u8; CHUNK];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < limit {
        s.write_all(&chunk)?;
        n += CHUNK as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut k = [0u8; 1];
    s.read_exact(&mut k)?;
    Ok(Floor {
        ops: n,
        elapsed: t.elapsed(),
    })
}

fn measure(mode: &str, limit: Duration, cpus: Option<(usize, usize)>) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("uwire-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{mode}.sock"));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--peer").arg(&path).arg(mode);
    if let Some((mine, peer)) = cpus {
        pin(mine)?;
        cmd.arg(peer.to_string());
    }
    let mut child = cmd.stdin(Stdio::null()).spawn()?;
    let (mut s, _) = listener.accept()?;
    let f = match mode {
        "pingpong" => pingpong(&mut s, limit),
        "perwrite" => perwrite(&mut s, limit),
        "batched" => batched(&mut s, limit),
        "stream" => stream(&mut s, limit),
        other => Err(format!("unknown mode {other}: pingpong, perwrite, batched, stream").into()),
    };
    drop(s);
    let status = child.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    let f = f?;
    if !status.success() {
        return Err(format!("echo process failed: {status}").into());
    }
    let per_sec = f.ops as f64 / f.elapsed.as_secs_f64();
    let (unit, in_flight) = match mode {
        "stream" => ("bytes", 0),
        "pingpong" => ("msgs", 1),
        _ => ("msgs", WINDOW),
    };
    Ok(format!(
        "{{\"floor\":\"{mode}\",\"unit\":\"{unit}\",\"msg_size\":{MSG},\"in_flight\":{in_flight},\
         \"count\":{},\"seconds\":{:.6},\"per_sec\":{per_sec:.1}}}",
        f.ops,
        f.elapsed.as_secs_f64()
    ))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--peer") {
        let (Some(path), Some(mode)) = (args.get(1), args.get(2)) else {
            return Err("--peer PATH MODE [CPU]".into());
        };
        if let Some(cpu) = args.get(3) {
            pin(cpu.parse()?)?;
        }
        return peer(path, mode);
    }
    let mut limit = Duration::from_secs(2);
    let mut cpus = None;
    let mut modes = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v: f64 = it.next().ok_or("--seconds needs a value")?.parse()?;
                if !(v.is_finite() && v > 0.0) {
                    return Err("--seconds must be positive".into());
                }
                limit = Duration::from_secs_f64(v);
            }
            "--cpus" => cpus = Some(parse_cpus(it.next().ok_or("--cpus needs A,B")?)?),
            "-h" | "--help" => {
                println!(
                    "bench_floor [--seconds S] [--cpus A,B] [pingpong|perwrite|batched|stream]..."
                );
                return Ok(());
            }
            m => modes.push(m.to_string()),
        }
    }
    if modes.is_empty() {
        modes = ["pingpong", "perwrite", "batched", "stream"]
            .map(String::from)
            .to_vec();
    }
    for m in &modes {
        println!("{}", measure(m, limit, cpus)?);
    }
    Ok(())
}
