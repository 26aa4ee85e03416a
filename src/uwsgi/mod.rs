//! The classic `uwsgi` protocol (nginx `uwsgi_pass`, uWSGI servers), pure
//! and sans-IO: no sockets, no tokio, no clock.
//!
//! uwire speaks it on both sides:
//!
//! * **server side** (nginx → uwire runtime): [`UwsgiDecoder`] reads the
//!   request packet, [`UwsgiRequest::to_request_head`] turns its CGI vars
//!   into the common [`RequestHead`](crate::frame::RequestHead), and
//!   [`encode_response_head`] writes the HTTP/1.1 head nginx expects back;
//! * **proxy side** (uwire proxy → a real uWSGI): [`encode_request`] builds
//!   the packet nginx's `uwsgi_params` would build, [`ResponseHeadParser`]
//!   reads the HTTP or CGI-style response head, and [`ChunkedDecoder`]
//!   removes a chunked transfer coding.
//!
//! # Wire format
//!
//! ```text
//! packet = modifier1:u8  datasize:u16le  modifier2:u8  block:datasize bytes  body
//! block  = *( key_size:u16le key val_size:u16le val )
//! ```
//!
//! For modifier1 0 (a WSGI/HTTP request) the block holds the CGI vars and
//! the request body follows, `CONTENT_LENGTH` bytes long (0 when the var is
//! absent or empty). The response is raw HTTP: a status line (or a CGI
//! `Status:` header), header lines, a blank line, then the body, delimited
//! by `Content-Length`, a chunked coding, or the end of the connection
//! (uwsgi has no keep-alive: one request per connection).
//!
//! A uwire/1 connection can never be mistaken for a uwsgi packet: see
//! [`crate::frame::preface`]. A socket that accepts both classifies each
//! connection by its first byte (`0x9A`: uwire) before handing it to
//! [`UwsgiDecoder`].
//!
//! # Decisions
//!
//! * **Modifiers.** Only modifier1 0 (WSGI/HTTP request) is accepted; any
//!   modifier2 is accepted with it and ignored (nginx sends 0 unless
//!   `uwsgi_modifier2` says otherwise; uWSGI ignores it for WSGI). Every
//!   other modifier1 is [`UwsgiError::UnsupportedModifier`], reported as
//!   soon as the 4-byte header is read, before the block is buffered. That
//!   includes the other language plugins' request modifiers (5 PSGI, 7
//!   Rack, 9 CGI, 14 PHP, ...: an nginx configured for another runtime),
//!   30 (uWSGI's old "strip `SCRIPT_NAME` from `PATH_INFO`"), 100 (ping,
//!   which uWSGI answers itself with an empty modifier1-100 packet: a
//!   runtime may do the same, [`PacketHeader::is_ping`]) and the
//!   management/spooler/eval modifiers, which must never reach an
//!   application. The runtime closes the connection with a log line naming
//!   the modifier.
//! * **Limits** ([`UwsgiLimits`]) are checked before anything is buffered
//!   or allocated: `datasize` at the header, the var count as vars are
//!   read, `CONTENT_LENGTH` against `max_body_size` when the block is
//!   complete, the response head size while scanning for its end.
//! * **Path.** See [`UwsgiRequest::to_request_head`]: the raw path of
//!   `REQUEST_URI` is used when it agrees with nginx's decoded `PATH_INFO`,
//!   and `PATH_INFO` (re-encoded) wins when they disagree, so the
//!   application routes on the path nginx authorised.
//! * **Responses** are parsed by hand with `nom` (no `httparse`): one parser
//!   covers both the status-line form and the CGI form, which `httparse`
//!   does not, with zero-copy slices and no new dependency. Chunked
//!   response bodies are dechunked ([`ChunkedDecoder`]) because uwire
//!   carries bodies in its own frames.
//!
//! ```
//! use bytes::BytesMut;
//! use uwire::uwsgi::{encode_packet, UwsgiDecoder, UwsgiLimits};
//!
//! let vars = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/hi?x=1"), ("PATH_INFO", "/hi")];
//! let mut wire = BytesMut::new();
//! encode_packet(0, 0, &vars, &UwsgiLimits::default(), &mut wire).unwrap();
//!
//! let mut decoder = UwsgiDecoder::new(UwsgiLimits::default());
//! let request = decoder.decode(&mut wire).unwrap().unwrap();
//! assert_eq!(request.get(b"REQUEST_METHOD"), Some(&b"GET"[..]));
//! let head = request.to_request_head().unwrap();
//! assert_eq!(&head.path[..], b"/hi");
//! assert_eq!(head.query.as_deref(), Some(&b"x=1"[..]));
//! ```

mod chunked;
mod convert;
mod decoder;
mod encode;
mod packet;
mod response;
mod util;

pub use chunked::{ChunkedDecoder, Dechunked};
pub use decoder::UwsgiDecoder;
pub use encode::{encode_request, request_vars};
pub use packet::{encode_packet, parse_vars, PacketHeader, UwsgiRequest, HEADER_LEN};
pub use response::{encode_response_head, BodyKind, ResponseHeadParser, UwsgiResponse};

/// modifier1 of a WSGI/HTTP request: the only one uwire serves.
pub const MODIFIER1_WSGI: u8 = 0;
/// modifier1 of a uWSGI ping (answered by uWSGI with an empty packet of
/// the same modifier1).
pub const MODIFIER1_PING: u8 = 100;
/// The largest vars block the 16-bit `datasize` can describe, and the
/// largest key or value a 16-bit size can describe.
pub const MAX_BLOCK_SIZE: usize = u16::MAX as usize;

/// Limits of the classic uwsgi codec. Every limit is checked before the
/// bytes it guards are buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UwsgiLimits {
    /// Largest vars block accepted by the decoder and produced by the
    /// encoders. Default 65535, the protocol's own cap. When proxying to a
    /// real uWSGI, set it to that server's `buffer-size` (uWSGI's default is
    /// 4096): uWSGI drops larger packets with only a log line.
    pub max_block_size: u16,
    /// Most vars in one block. Default 1024 (nginx's standard params are 14,
    /// plus one per request header).
    pub max_vars: usize,
    /// Largest `CONTENT_LENGTH` accepted; `None` (the default) means no
    /// limit. A larger one is [`UwsgiError::BodyTooLarge`] (answer 413).
    pub max_body_size: Option<u64>,
    /// Largest response head (status line or CGI fields, header lines and
    /// the blank line), and largest trailer section of a chunked body.
    /// Default 64 KiB.
    pub max_response_head: usize,
}

impl Default for UwsgiLimits {
    fn default() -> UwsgiLimits {
        UwsgiLimits {
            max_block_size: u16::MAX,
            max_vars: 1024,
            max_body_size: None,
            max_response_head: 64 * 1024,
        }
    }
}

/// Every way the classic uwsgi codec can refuse its input. [`class`]
/// (`UwsgiError::class`) is the stable name used by the shared vectors
/// (`tests/vectors/uwsgi_*.json`).
///
/// [`class`]: UwsgiError::class
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UwsgiError {
    /// The input ended inside a packet header, vars block, response head or
    /// chunked body.
    #[error("input ended inside the {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// The packet is not a WSGI/HTTP request (modifier1 other than 0).
    #[error("uwsgi packet with modifier1 {modifier1} (modifier2 {modifier2}) is not a WSGI/HTTP request")]
    UnsupportedModifier {
        /// The packet's modifier1.
        modifier1: u8,
        /// The packet's modifier2.
        modifier2: u8,
    },
    /// A vars block larger than the configured limit or than 65535 bytes.
    #[error("vars block of {size} bytes exceeds the limit of {limit} bytes")]
    BlockTooLarge {
        /// Size of the block (declared, or that encoding would produce).
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// A key size, key, value size or value runs past the end of the block.
    #[error("var at block offset {offset}: the {what} runs past the end of the block")]
    VarPastEnd {
        /// Offset of the var in the block.
        offset: usize,
        /// `"key size"`, `"key"`, `"value size"` or `"value"`.
        what: &'static str,
    },
    /// A var with an empty key.
    #[error("var at block offset {offset} has an empty key")]
    EmptyKey {
        /// Offset of the var in the block (or index of the pair when encoding).
        offset: usize,
    },
    /// More vars than [`UwsgiLimits::max_vars`].
    #[error("more than {limit} vars")]
    TooManyVars {
        /// The limit.
        limit: usize,
    },
    /// `CONTENT_LENGTH` appears more than once (request smuggling defence:
    /// readers that pick different copies disagree on the body length).
    #[error("CONTENT_LENGTH appears more than once")]
    DuplicateContentLength,
    /// `CONTENT_LENGTH` is not empty and not a plain decimal that fits in
    /// 64 bits (signs, spaces, lists and hex are refused).
    #[error("invalid CONTENT_LENGTH {value:?}")]
    InvalidContentLength {
        /// The offending value (lossy UTF-8, cut to 64 bytes).
        value: String,
    },
    /// `CONTENT_LENGTH` exceeds [`UwsgiLimits::max_body_size`].
    #[error("body of {length} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The declared length.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// `REQUEST_METHOD` is missing, empty or not a token (or, when encoding,
    /// the head's method is).
    #[error("REQUEST_METHOD is missing, empty or not a token")]
    InvalidMethod,
    /// A var name that cannot be carried as a parameter (not an RFC 9110
    /// token).
    #[error("var name {name:?} is not a token")]
    InvalidVarName {
        /// The name (lossy UTF-8, cut to 64 bytes).
        name: String,
    },
    /// A value holds NUL, CR or LF where the head cannot carry it (or, when
    /// encoding, the path is empty or decodes to a NUL).
    #[error("{name}: {detail}")]
    InvalidValue {
        /// The var or head field.
        name: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// `REMOTE_PORT` or `SERVER_PORT` is not empty and not a decimal port.
    #[error("{name} {value:?} is not a port number")]
    InvalidPort {
        /// `REMOTE_PORT` or `SERVER_PORT`.
        name: &'static str,
        /// The value (lossy UTF-8, cut to 64 bytes).
        value: String,
    },
    /// A key or value longer than 65535 bytes cannot be encoded.
    #[error("var key or value of {len} bytes exceeds 65535 bytes")]
    VarTooLong {
        /// Its length.
        len: usize,
    },
    /// A response head larger than [`UwsgiLimits::max_response_head`].
    #[error("response head exceeds {limit} bytes")]
    ResponseHeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A malformed response head (status line, header line, `Status`
    /// field), or a head that cannot be written (status outside 100..=999,
    /// an interim status nginx would take as final, CR/LF/NUL in the reason).
    #[error("invalid response head: {detail}")]
    InvalidResponseHead {
        /// What is wrong.
        detail: &'static str,
    },
    /// Contradictory or malformed body framing in a response head
    /// (`Content-Length`, `Transfer-Encoding`).
    #[error("invalid response framing: {detail}")]
    InvalidResponseFraming {
        /// What is wrong.
        detail: &'static str,
    },
    /// A malformed chunked body.
    #[error("invalid chunked body: {detail}")]
    InvalidChunk {
        /// What is wrong.
        detail: &'static str,
    },
}

impl UwsgiError {
    /// The stable snake_case name used by the shared test vectors and logs.
    pub fn class(&self) -> &'static str {
        match self {
            UwsgiError::Truncated { .. } => "truncated",
            UwsgiError::UnsupportedModifier { .. } => "unsupported_modifier",
            UwsgiError::BlockTooLarge { .. } => "block_too_large",
            UwsgiError::VarPastEnd { .. } => "var_past_end",
            UwsgiError::EmptyKey { .. } => "empty_key",
            UwsgiError::TooManyVars { .. } => "too_many_vars",
            UwsgiError::DuplicateContentLength => "duplicate_content_length",
            UwsgiError::InvalidContentLength { .. } => "invalid_content_length",
            UwsgiError::BodyTooLarge { .. } => "body_too_large",
            UwsgiError::InvalidMethod => "invalid_method",
            UwsgiError::InvalidVarName { .. } => "invalid_var_name",
            UwsgiError::InvalidValue { .. } => "invalid_value",
            UwsgiError::InvalidPort { .. } => "invalid_port",
            UwsgiError::VarTooLong { .. } => "var_too_long",
            UwsgiError::ResponseHeadTooLarge { .. } => "response_head_too_large",
            UwsgiError::InvalidResponseHead { .. } => "invalid_response_head",
            UwsgiError::InvalidResponseFraming { .. } => "invalid_response_framing",
            UwsgiError::InvalidChunk { .. } => "invalid_chunk",
        }
    }

    /// The status a server-side runtime may answer a refused request with,
    /// before closing: 413 for [`UwsgiError::BodyTooLarge`], 400 for a
    /// packet that decoded but whose vars do not make a request (method,
    /// names, values, ports, `CONTENT_LENGTH`). `None` means close without
    /// answering: the bytes are not a well-formed request packet (truncated,
    /// unsupported modifier, malformed or oversized block), or the error is
    /// not about a request at all.
    pub fn suggested_status(&self) -> Option<u16> {
        match self {
            UwsgiError::BodyTooLarge { .. } => Some(413),
            UwsgiError::DuplicateContentLength
            | UwsgiError::InvalidContentLength { .. }
            | UwsgiError::InvalidMethod
            | UwsgiError::InvalidVarName { .. }
            | UwsgiError::InvalidValue { .. }
            | UwsgiError::InvalidPort { .. } => Some(400),
            _ => None,
        }
    }
}

/// `value` for an error message: lossy UTF-8, at most 64 bytes.
pub(crate) fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned()
}

#[cfg(test)]
mod tests;
