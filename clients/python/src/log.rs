//! Logging of the native side: one line per event on standard error,
//! `[time] [pid] [LEVEL] message`, like the Python side's log lines.

use std::fmt;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => "ERROR",
            tracing::Level::WARN => "WARNING",
            tracing::Level::INFO => "INFO",
            tracing::Level::DEBUG => "DEBUG",
            tracing::Level::TRACE => "TRACE",
        };
        write!(
            writer,
            "[{}] [{}] [{}] ",
            crate::wsgi::utc_now(),
            std::process::id(),
            level
        )?;
        if meta.target() == "wsgi.errors" {
            write!(writer, "wsgi.errors: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Sets up logging of the native side at `level` (critical, error,
/// warning, info, debug). The first call in a process wins; forked
/// children inherit it.
#[pyfunction]
pub fn init_logging(level: &str) -> PyResult<()> {
    let filter = match level.to_ascii_lowercase().as_str() {
        "critical" | "error" => "error",
        "warning" | "warn" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown log level {other:?}: critical, error, warning, info or debug"
            )))
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Line)
        .try_init();
    Ok(())
}
