//! The `uwire` command.

mod alloc;
mod bench;
mod config_file;
mod duration;
mod proxy;
mod selftest;
mod serve;
mod threads;

use clap::{CommandFactory, Parser, Subcommand};

/// uwire: a multiplexed binary transport between a reverse proxy and apps.
#[derive(Parser, Debug)]
#[command(name = "uwire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a client and a server over a real Unix socket and checks that
    /// many concurrent requests, streamed bodies, PING and graceful shutdown
    /// all work end to end.
    Selftest(selftest::Args),
    /// Runs the app-side runtime with the built-in demo app (/, /echo, /environ).
    Serve(serve::Args),
    /// Runs the HTTP front: forwards HTTP requests to uwire (or classic uwsgi) upstreams.
    Proxy(proxy::Args),
    /// Runs the HTTP front and the demo app in one process on built-in defaults.
    Quickstart(proxy::QuickstartArgs),
    /// Load-tests a running runtime with the uwire/1 client over one Unix
    /// socket connection (IPC throughput and latency).
    Bench(bench::Args),
}

fn main() -> std::process::ExitCode {
    // `--config FILE`: its options go before the command line's.
    let argv = match config_file::apply(std::env::args_os().collect(), &Cli::command()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("uwire: error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UWIRE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // The servers run thread-per-core: this thread is the first of their
    // `--threads` current-thread runtimes (see `threads`). The tools use a
    // multi-thread runtime.
    let serving = matches!(
        cli.command,
        Command::Serve(_) | Command::Proxy(_) | Command::Quickstart(_)
    );
    let busy_poll = match &cli.command {
        Command::Serve(a) => threads::busy_poll(a.busy_poll, a.threads),
        Command::Proxy(a) => threads::busy_poll(a.front.busy_poll, a.front.threads),
        Command::Quickstart(a) => threads::busy_poll(a.front.busy_poll, a.front.threads),
        Command::Bench(a) => a.busy_poll,
        Command::Selftest(_) => std::time::Duration::ZERO,
    };
    let builder = if serving {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = threads::runtime(builder, busy_poll).expect("failed to start the tokio runtime");
    let result = rt.block_on(async {
        if serving {
            alloc::spawn_upkeep();
        }
        match cli.command {
            Command::Selftest(args) => selftest::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Proxy(args) => proxy::run(args).await,
            Command::Quickstart(args) => proxy::quickstart(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uwire: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("uwire").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn busy_poll_flags_and_their_limits() {
        use std::time::Duration;
        let default = uwire::net::busy_poll::DEFAULT_BUSY_POLL;
        assert_eq!(default, Duration::from_micros(50));
        let Command::Serve(a) = parse(&["serve"]) else {
            unreachable!()
        };
        assert_eq!(threads::busy_poll(a.busy_poll, a.threads), default);
        let Command::Serve(a) = parse(&["serve", "--threads", "2"]) else {
            unreachable!()
        };
        assert_eq!(threads::busy_poll(a.busy_poll, a.threads), Duration::ZERO);
        let Command::Serve(a) = parse(&["serve", "--threads", "2", "--busy-poll", "50us"]) else {
            unreachable!()
        };
        assert_eq!(
            threads::busy_poll(a.busy_poll, a.threads),
            Duration::from_micros(50)
        );
        let Command::Proxy(a) = parse(&["proxy", "--upstream", "unix:/x", "--busy-poll", "10ms"])
        else {
            unreachable!()
        };
        assert_eq!(
            a.front.busy_poll,
            Some(uwire::net::busy_poll::MAX_BUSY_POLL)
        );
        let Command::Quickstart(a) = parse(&["quickstart", "--busy-poll", "0"]) else {
            unreachable!()
        };
        assert_eq!(
            threads::busy_poll(a.front.busy_poll, a.front.threads),
            Duration::ZERO
        );
        let Command::Bench(a) = parse(&["bench", "--socket", "/x"]) else {
            unreachable!()
        };
        assert_eq!(a.busy_poll, default);
        let Command::Bench(a) = parse(&["bench", "--socket", "/x", "--busy-poll", "1.5ms"]) else {
            unreachable!()
        };
        assert_eq!(a.busy_poll, Duration::from_micros(1500));
        assert_eq!(
            duration::parse_busy_poll("10001us").unwrap_err(),
            "--busy-poll \"10001us\": at most 10ms"
        );
        assert!(duration::parse_busy_poll("-1us").is_err());
        assert!(duration::parse_busy_poll("5 parsecs").is_err());
    }

    #[test]
    fn write_batch_reaches_the_connection_configs() {
        let Command::Serve(a) = parse(&["serve"]) else {
            unreachable!()
        };
        assert_eq!(
            a.config().conn.write_batch,
            uwire::conn::DEFAULT_WRITE_BATCH
        );
        let Command::Serve(a) = parse(&["serve", "--write-batch", "1"]) else {
            unreachable!()
        };
        assert_eq!(a.config().conn.write_batch, 1);
        let Command::Proxy(a) = parse(&["proxy", "--upstream", "unix:/a", "--write-batch", "0"])
        else {
            unreachable!()
        };
        assert_eq!(a.front.configs().0.conn.write_batch, 0);
        let Command::Quickstart(a) = parse(&["quickstart", "--write-batch", "64"]) else {
            unreachable!()
        };
        assert_eq!(a.front.configs().0.conn.write_batch, 64);
        assert_eq!(a.app_config().conn.write_batch, 64);
        assert!(Cli::try_parse_from(["uwire", "serve", "--write-batch", "-1"]).is_err());
    }

    #[test]
    fn connections_per_upstream_defaults() {
        let four = uwire::client::DEFAULT_MAX_CONNECTIONS_PER_UPSTREAM;
        let Command::Proxy(a) = parse(&["proxy", "--upstream", "unix:/a"]) else {
            unreachable!()
        };
        assert_eq!(a.front.configs().0.max_connections_per_upstream, four);
        // One thread: the quickstart's app runs on the front's thread.
        let Command::Quickstart(a) = parse(&["quickstart"]) else {
            unreachable!()
        };
        assert_eq!(a.configs().0.max_connections_per_upstream, 1);
        let Command::Quickstart(a) = parse(&["quickstart", "--threads", "2"]) else {
            unreachable!()
        };
        assert_eq!(a.configs().0.max_connections_per_upstream, four);
        let Command::Quickstart(a) = parse(&["quickstart", "--connections-per-upstream", "3"])
        else {
            unreachable!()
        };
        assert_eq!(a.configs().0.max_connections_per_upstream, 3);
    }

    #[test]
    fn upstream_keepalive_and_ping_timeout_reach_the_client_config() {
        use std::time::Duration;
        let Command::Proxy(a) = parse(&["proxy", "--upstream", "unix:/a"]) else {
            unreachable!()
        };
        let c = a.front.configs().0.conn;
        assert_eq!(c.keepalive_interval, Some(uwire::client::DEFAULT_KEEPALIVE));
        assert_eq!(c.ping_timeout, uwire::conn::DEFAULT_PING_TIMEOUT);
        let Command::Proxy(a) = parse(&[
            "proxy",
            "--upstream",
            "unix:/a",
            "--upstream-keepalive",
            "0",
            "--upstream-ping-timeout",
            "1500ms",
        ]) else {
            unreachable!()
        };
        let c = a.front.configs().0.conn;
        assert_eq!(c.keepalive_interval, None);
        assert_eq!(c.ping_timeout, Duration::from_millis(1500));
        let Command::Quickstart(a) = parse(&["quickstart", "--upstream-keepalive", "2s"]) else {
            unreachable!()
        };
        assert_eq!(
            a.front.configs().0.conn.keepalive_interval,
            Some(Duration::from_secs(2))
        );
        // A zero ping timeout would fail every connection at its first PING.
        assert!(Cli::try_parse_from([
            "uwire",
            "proxy",
            "--upstream",
            "unix:/a",
            "--upstream-ping-timeout",
            "0"
        ])
        .is_err());
    }
}
