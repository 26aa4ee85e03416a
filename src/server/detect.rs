//! Protocol detection: one listening socket speaks uwire/1 and classic
//! uwsgi. In `auto` mode the first bytes of a connection decide (the uwire
//! preface starts with `0x9A`, which no uwsgi packet can); the bytes read to
//! decide are put back in front of the stream ([`Rewind`]) so the chosen
//! protocol reads it untouched.

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::gate::{ConnProtocol, GateGuard};
use super::listener::Accepted;
use super::pipeline::Ctx;
use super::{uwire, uwsgi, ProtocolMode};
use crate::frame::preface;
use crate::net::Rewind;

/// Serves one accepted connection in the configured protocol, detecting it
/// from the first bytes in `auto` mode. The protocol is reported to the
/// accept gate's guard once known; the guard reports the close when this
/// returns.
pub(crate) async fn serve<T: Accepted>(
    mut io: T,
    ctx: Ctx,
    stop: watch::Receiver<bool>,
    mut gated: Option<GateGuard>,
) {
    let mut identify = |protocol| {
        if let Some(g) = gated.as_mut() {
            g.identify(protocol);
        }
    };
    match ctx.config.protocol {
        ProtocolMode::Uwire => {
            identify(ConnProtocol::Uwire);
            uwire::serve(io, ctx, stop).await
        }
        ProtocolMode::Uwsgi => {
            identify(ConnProtocol::Uwsgi);
            uwsgi::serve(io, ctx, BytesMut::with_capacity(8 * 1024)).await
        }
        ProtocolMode::Auto => {
            // Read whatever has arrived (usually the whole uwsgi packet, or
            // the uwire preface and SETTINGS) and classify by its first byte.
            let mut first = BytesMut::with_capacity(16 * 1024);
            let n =
                match tokio::time::timeout(ctx.config.uwsgi_head_timeout, io.read_buf(&mut first))
                    .await
                {
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "connection failed before its first byte");
                        0
                    }
                    Err(_) => {
                        tracing::debug!("connection sent nothing in time; closing");
                        0
                    }
                };
            if n == 0 {
                // A connection that ends before its first byte is still
                // counted.
                ctx.metrics.connection_opened();
                ctx.metrics.connection_closed();
                return;
            }
            if preface::is_uwire_first_byte(first[0]) {
                identify(ConnProtocol::Uwire);
                uwire::serve(Rewind::new(first.freeze(), io), ctx, stop).await
            } else {
                identify(ConnProtocol::Uwsgi);
                uwsgi::serve(io, ctx, first).await
            }
        }
    }
}
