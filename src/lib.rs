//! uwire: a multiplexed, flow-controlled binary transport between a reverse
//! proxy and application processes, and a drop-in successor to the classic
//! `uwsgi` protocol.
//!
//! The crate is layered the way h2 and quinn are:
//!
//! * [`frame`]: the wire model. One file per frame kind, the fixed 9-byte
//!   frame header parsed with `nom`, request/response heads carried as
//!   `prost` messages with compact zero-copy header blocks.
//! * [`codec`]: a `tokio_util::codec` [`Decoder`](tokio_util::codec::Decoder)
//!   and [`Encoder`](tokio_util::codec::Encoder) for frames, with every limit
//!   checked before any allocation.
//! * [`conn`]: the sans-IO connection engine: stream table, states, flow
//!   control, settings, RESET, PING and GOAWAY, driven by `handle_*` inputs
//!   and drained by `poll_*` outputs, with time passed in.
//!
//! None of these layers performs I/O; the async glue lives behind the `net`
//! feature.
//!
//! ```
//! use bytes::BytesMut;
//! use tokio_util::codec::{Decoder, Encoder};
//! use uwire::codec::Codec;
//! use uwire::frame::{Data, Frame, StreamId};
//!
//! let mut codec = Codec::without_preface(Default::default());
//! let mut buf = BytesMut::new();
//! let frame: Frame = Data::new(StreamId::new(1), "hello".into(), true).into();
//! codec.encode(frame.clone(), &mut buf).unwrap();
//! assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "mimalloc")]
pub mod alloc;
#[cfg(feature = "net")]
pub mod client;
pub mod codec;
pub mod conn;
pub mod environ;
pub mod frame;
#[cfg(feature = "net")]
pub mod net;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "net")]
pub mod server;
pub mod uwsgi;

/// Generated prost types. Kept private: the public API speaks the
/// hand-written types in [`frame`].
#[allow(missing_docs, clippy::all)]
pub(crate) mod pb {
    include!(concat!(env!("OUT_DIR"), "/uwire.v1.rs"));
}
