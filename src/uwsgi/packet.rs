//! The 4-byte packet header and the vars block, parsed with `nom` and
//! encoded with every size checked before a byte is written.

use bytes::{BufMut, Bytes};
use nom::bytes::complete::take;
use nom::number::complete::{le_u16, u8 as nom_u8};
use nom::{IResult, Parser};

use super::util::parse_u64;
use super::{lossy, UwsgiError, UwsgiLimits, MAX_BLOCK_SIZE, MODIFIER1_PING, MODIFIER1_WSGI};

/// Length of the packet header in bytes.
pub const HEADER_LEN: usize = 4;

/// The 4-byte header of a uwsgi packet: `modifier1:u8 datasize:u16le
/// modifier2:u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PacketHeader {
    /// Packet type (0: WSGI/HTTP request).
    pub modifier1: u8,
    /// Size of the vars block that follows (the request body excluded).
    pub datasize: u16,
    /// Sub-type; 0 for requests from nginx, ignored by uwire.
    pub modifier2: u8,
}

type NomError<'a> = nom::error::Error<&'a [u8]>;

fn header_fields(input: &[u8]) -> IResult<&[u8], (u8, u16, u8)> {
    (nom_u8, le_u16, nom_u8).parse(input)
}

impl PacketHeader {
    /// A header with these fields.
    pub const fn new(modifier1: u8, datasize: u16, modifier2: u8) -> PacketHeader {
        PacketHeader {
            modifier1,
            datasize,
            modifier2,
        }
    }

    /// Parses the header at the start of `src`; `None` when fewer than
    /// [`HEADER_LEN`] bytes are available. Any 4 bytes are a header: what
    /// they may say is checked by [`PacketHeader::check`].
    pub fn parse(src: &[u8]) -> Option<PacketHeader> {
        let (_, (modifier1, datasize, modifier2)) = header_fields(src).ok()?;
        Some(PacketHeader::new(modifier1, datasize, modifier2))
    }

    /// Checks a request header against `limits`, in this order: modifier1
    /// must be [`MODIFIER1_WSGI`] ([`UwsgiError::UnsupportedModifier`]),
    /// then `datasize` must not exceed [`UwsgiLimits::max_block_size`]
    /// ([`UwsgiError::BlockTooLarge`]). Called as soon as the header is
    /// read, before the block is buffered.
    pub fn check(&self, limits: &UwsgiLimits) -> Result<(), UwsgiError> {
        if self.modifier1 != MODIFIER1_WSGI {
            return Err(UwsgiError::UnsupportedModifier {
                modifier1: self.modifier1,
                modifier2: self.modifier2,
            });
        }
        if self.datasize > limits.max_block_size {
            return Err(UwsgiError::BlockTooLarge {
                size: self.datasize.into(),
                limit: limits.max_block_size.into(),
            });
        }
        Ok(())
    }

    /// Whether this is a uWSGI ping (modifier1 100), which uWSGI answers
    /// with an empty packet of the same modifier1.
    pub fn is_ping(&self) -> bool {
        self.modifier1 == MODIFIER1_PING
    }

    /// The header's 4 bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let [lo, hi] = self.datasize.to_le_bytes();
        [self.modifier1, lo, hi, self.modifier2]
    }

    /// Writes the header.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        dst.put_slice(&self.to_bytes());
    }
}

/// `(key, value, rest of the block)`.
type Var<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Reads one var at the start of `input`, or names the field that runs past
/// the end.
fn var(input: &[u8]) -> Result<Var<'_>, &'static str> {
    let (rest, key_len) = le_u16::<_, NomError<'_>>(input).map_err(|_| "key size")?;
    let (rest, key) = take::<_, _, NomError<'_>>(key_len)
        .parse(rest)
        .map_err(|_| "key")?;
    let (rest, val_len) = le_u16::<_, NomError<'_>>(rest).map_err(|_| "value size")?;
    let (rest, value) = take::<_, _, NomError<'_>>(val_len)
        .parse(rest)
        .map_err(|_| "value")?;
    Ok((key, value, rest))
}

/// Splits a complete vars block into its `(key, value)` pairs, in order,
/// as zero-copy slices of `block`. Keys and values are raw bytes (no
/// UTF-8 or token requirement here; repeats kept).
///
/// Checks, var by var in block order: the structure
/// ([`UwsgiError::VarPastEnd`]), a non-empty key
/// ([`UwsgiError::EmptyKey`]), and at most `max_vars` vars
/// ([`UwsgiError::TooManyVars`], reported when var `max_vars + 1` is
/// read, before it is stored).
pub fn parse_vars(block: &Bytes, max_vars: usize) -> Result<Vec<(Bytes, Bytes)>, UwsgiError> {
    let mut vars = Vec::with_capacity(var_slots(block.len(), max_vars));
    walk_vars(block, max_vars, |key, value| {
        vars.push((block.slice_ref(key), block.slice_ref(value)));
    })?;
    Ok(vars)
}

/// Room for the vars of a block of `len` bytes, reserved at once (a var
/// takes 4 bytes of lengths plus its key and value; nginx's are about 30
/// bytes on average) instead of growing one var at a time; a block of a
/// few huge vars gets no more than 64 slots up front.
fn var_slots(len: usize, max_vars: usize) -> usize {
    (len / 24).min(max_vars).min(64)
}

/// [`parse_vars`]'s walk and checks, handing each `(key, value)` to `each`.
fn walk_vars<'a>(
    block: &'a [u8],
    max_vars: usize,
    mut each: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<(), UwsgiError> {
    let mut count = 0;
    let mut rest: &[u8] = block;
    while !rest.is_empty() {
        let offset = block.len() - rest.len();
        let (key, value, tail) =
            var(rest).map_err(|what| UwsgiError::VarPastEnd { offset, what })?;
        if key.is_empty() {
            return Err(UwsgiError::EmptyKey { offset });
        }
        if count == max_vars {
            return Err(UwsgiError::TooManyVars { limit: max_vars });
        }
        count += 1;
        each(key, value);
        rest = tail;
    }
    Ok(())
}

/// The body length `vars` declare ([`ContentLengthVar`]'s rules).
#[cfg(test)]
fn content_length<'a>(
    vars: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Option<u64>, UwsgiError> {
    let mut found = ContentLengthVar::default();
    for (k, v) in vars {
        found.see(k, v);
    }
    found.value()
}

/// The `CONTENT_LENGTH` var of a block, gathered while walking it. The body
/// length it declares is `None` when the var is absent or empty (nginx
/// sends it empty for requests without a body). A repeated `CONTENT_LENGTH`
/// (even with equal values) is [`UwsgiError::DuplicateContentLength`]; a
/// value that is not a plain decimal fitting in 64 bits is
/// [`UwsgiError::InvalidContentLength`].
#[derive(Default)]
struct ContentLengthVar<'a> {
    value: Option<&'a [u8]>,
    repeated: bool,
}

impl<'a> ContentLengthVar<'a> {
    /// Notes one var.
    #[inline]
    fn see(&mut self, key: &[u8], value: &'a [u8]) {
        if key == b"CONTENT_LENGTH" {
            self.repeated |= self.value.is_some();
            self.value = Some(value);
        }
    }

    /// The length it gives.
    fn value(&self) -> Result<Option<u64>, UwsgiError> {
        if self.repeated {
            return Err(UwsgiError::DuplicateContentLength);
        }
        match self.value {
            None | Some([]) => Ok(None),
            Some(v) => parse_u64(v)
                .map(Some)
                .ok_or_else(|| UwsgiError::InvalidContentLength { value: lossy(v) }),
        }
    }
}

/// A decoded request packet: its header, its vars and the length of the
/// raw body that follows it on the connection.
///
/// The vars are kept as positions in the block, not as a `Bytes` each:
/// reading them borrows the block, and converting a request
/// ([`UwsgiRequest::to_request_head`]) shares only the few values the head
/// keeps (nginx sends about twenty vars; a `Bytes` per key and value cost
/// two reference-count updates each).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UwsgiRequest {
    /// The packet header.
    pub header: PacketHeader,
    /// The vars block.
    block: Bytes,
    /// Where each var's key and value lie in `block`, in block order.
    vars: Vec<VarAt>,
    /// Body bytes that follow the block: `CONTENT_LENGTH`, 0 when it is
    /// absent or empty.
    pub body_length: u64,
    /// `CONTENT_LENGTH` as the head states it: `None` when absent or empty.
    content_length: Option<u64>,
}

/// A var's key and value as byte ranges of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VarAt {
    key: (u32, u32),
    value: (u32, u32),
}

impl std::fmt::Debug for UwsgiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("UwsgiRequest")
            .field("header", &self.header)
            .field(
                "vars",
                &self
                    .vars()
                    .map(|(k, v)| (lossy(k), lossy(v)))
                    .collect::<Vec<_>>(),
            )
            .field("body_length", &self.body_length)
            .finish()
    }
}

impl UwsgiRequest {
    /// Decodes a complete block (exactly `header.datasize` bytes) of a
    /// header that passed [`PacketHeader::check`]. Structure first
    /// ([`parse_vars`]'s checks), then `CONTENT_LENGTH` (duplicate, then
    /// syntax), then [`UwsgiLimits::max_body_size`]
    /// ([`UwsgiError::BodyTooLarge`]).
    pub fn parse(
        header: PacketHeader,
        block: Bytes,
        limits: &UwsgiLimits,
    ) -> Result<UwsgiRequest, UwsgiError> {
        debug_assert_eq!(block.len(), usize::from(header.datasize));
        let mut vars = Vec::with_capacity(var_slots(block.len(), limits.max_vars));
        let at = |field: &[u8]| {
            let start = field.as_ptr() as usize - block.as_ptr() as usize;
            // A block is at most 65,535 bytes (its size is a u16).
            (start as u32, (start + field.len()) as u32)
        };
        // `CONTENT_LENGTH` is found on the same walk (it was a second pass
        // over every var, and `to_request_head` made a third).
        let mut cl = ContentLengthVar::default();
        walk_vars(&block, limits.max_vars, |key, value| {
            cl.see(key, value);
            vars.push(VarAt {
                key: at(key),
                value: at(value),
            });
        })?;
        let content_length = cl.value()?;
        let body_length = content_length.unwrap_or(0);
        if let Some(limit) = limits.max_body_size {
            if body_length > limit {
                return Err(UwsgiError::BodyTooLarge {
                    length: body_length,
                    limit,
                });
            }
        }
        Ok(UwsgiRequest {
            header,
            block,
            vars,
            body_length,
            content_length,
        })
    }

    /// The vars in block order, as `(key, value)` slices of the block.
    pub fn vars(
        &self,
    ) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + DoubleEndedIterator + Clone + '_ {
        let field = |(start, end): (u32, u32)| &self.block[start as usize..end as usize];
        self.vars
            .iter()
            .map(move |v| (field(v.key), field(v.value)))
    }

    /// `CONTENT_LENGTH` as the head states it: `None` when absent or empty
    /// (checked by [`UwsgiRequest::parse`]).
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The vars block, as received.
    pub fn block(&self) -> &Bytes {
        &self.block
    }

    /// A `Bytes` of `field`, a slice of this request's block (shared, not
    /// copied).
    pub(crate) fn share(&self, field: &[u8]) -> Bytes {
        self.block.slice_ref(field)
    }

    /// The value of the last var named exactly `key` (uWSGI builds a
    /// dictionary from the vars, so a later repeat wins).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.vars().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Writes a packet: the header (`modifier1`, the block size, `modifier2`)
/// then the vars block, and returns the header written.
///
/// Refuses, before writing anything: more than `limits.max_vars` vars, an
/// empty key, a key or value over 65535 bytes ([`UwsgiError::VarTooLong`]),
/// and a block over 65535 bytes or over `limits.max_block_size`
/// ([`UwsgiError::BlockTooLarge`]). Sizes are never truncated or wrapped
/// (the CVE-2020-11984 class of bug).
pub fn encode_packet<K, V, B>(
    modifier1: u8,
    modifier2: u8,
    vars: &[(K, V)],
    limits: &UwsgiLimits,
    dst: &mut B,
) -> Result<PacketHeader, UwsgiError>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    B: BufMut,
{
    if vars.len() > limits.max_vars {
        return Err(UwsgiError::TooManyVars {
            limit: limits.max_vars,
        });
    }
    let mut size: usize = 0;
    for (i, (k, v)) in vars.iter().enumerate() {
        let (k, v) = (k.as_ref(), v.as_ref());
        if k.is_empty() {
            return Err(UwsgiError::EmptyKey { offset: i });
        }
        for len in [k.len(), v.len()] {
            if len > MAX_BLOCK_SIZE {
                return Err(UwsgiError::VarTooLong { len });
            }
        }
        // Each term is at most 2 * 65537, so this cannot overflow before the
        // check below stops the loop.
        size += 4 + k.len() + v.len();
        if size > MAX_BLOCK_SIZE {
            return Err(UwsgiError::BlockTooLarge {
                size: vars_size(vars),
                limit: MAX_BLOCK_SIZE,
            });
        }
    }
    if size > usize::from(limits.max_block_size) {
        return Err(UwsgiError::BlockTooLarge {
            size,
            limit: limits.max_block_size.into(),
        });
    }
    let datasize = u16::try_from(size).expect("checked against 65535 above");
    let header = PacketHeader::new(modifier1, datasize, modifier2);
    header.encode(dst);
    for (k, v) in vars {
        let (k, v) = (k.as_ref(), v.as_ref());
        dst.put_u16_le(k.len() as u16);
        dst.put_slice(k);
        dst.put_u16_le(v.len() as u16);
        dst.put_slice(v);
    }
    Ok(header)
}

/// Size of the block `vars` would encode to (saturating).
fn vars_size<K: AsRef<[u8]>, V: AsRef<[u8]>>(vars: &[(K, V)]) -> usize {
    vars.iter().fold(0usize, |acc, (k, v)| {
        acc.saturating_add(4 + k.as_ref().len() + v.as_ref().len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn header_round_trip_and_short_input() {
        let h = PacketHeader::new(0, 0x1234, 7);
        assert_eq!(h.to_bytes(), [0, 0x34, 0x12, 7]);
        let mut buf = Vec::new();
        h.encode(&mut buf);
        assert_eq!(PacketHeader::parse(&buf), Some(h));
        for n in 0..HEADER_LEN {
            assert_eq!(PacketHeader::parse(&buf[..n]), None);
        }
        assert!(PacketHeader::new(100, 0, 0).is_ping());
    }

    #[test]
    fn header_check_order() {
        let limits = UwsgiLimits {
            max_block_size: 10,
            ..UwsgiLimits::default()
        };
        assert!(PacketHeader::new(0, 10, 0).check(&limits).is_ok());
        assert_eq!(
            PacketHeader::new(0, 11, 0).check(&limits),
            Err(UwsgiError::BlockTooLarge {
                size: 11,
                limit: 10
            })
        );
        // modifier1 is checked first.
        assert_eq!(
            PacketHeader::new(5, 11, 1)
                .check(&limits)
                .unwrap_err()
                .class(),
            "unsupported_modifier"
        );
    }

    fn block(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    #[test]
    fn vars_parse_zero_copy_binary_and_repeats() {
        let b = block(b"\x01\x00a\x02\x00\xff\x00\x01\x00a\x00\x00");
        let vars = parse_vars(&b, 10).unwrap();
        assert_eq!(vars.len(), 2);
        assert_eq!(&vars[0].1[..], b"\xff\x00");
        assert_eq!(vars[0].1.as_ptr(), b[5..].as_ptr());
        assert_eq!(&vars[1].1[..], b"");
        assert!(parse_vars(&Bytes::new(), 0).unwrap().is_empty());
    }

    #[test]
    fn vars_structure_errors() {
        let past = |b: &'static [u8]| match parse_vars(&block(b), 10) {
            Err(UwsgiError::VarPastEnd { what, offset }) => (what, offset),
            other => panic!("{other:?}"),
        };
        assert_eq!(past(b"\x01"), ("key size", 0));
        assert_eq!(past(b"\x05\x00ab"), ("key", 0));
        assert_eq!(past(b"\x01\x00a"), ("value size", 0));
        assert_eq!(past(b"\x01\x00a\x00"), ("value size", 0));
        assert_eq!(past(b"\x01\x00a\x03\x00xy"), ("value", 0));
        assert_eq!(past(b"\x01\x00a\x00\x00\x01"), ("key size", 5));
        assert_eq!(
            parse_vars(&block(b"\x00\x00\x01\x00x"), 10),
            Err(UwsgiError::EmptyKey { offset: 0 })
        );
        let two = block(b"\x01\x00a\x00\x00\x01\x00b\x00\x00");
        assert_eq!(parse_vars(&two, 2).unwrap().len(), 2);
        assert_eq!(
            parse_vars(&two, 1),
            Err(UwsgiError::TooManyVars { limit: 1 })
        );
    }

    fn cl(values: &[&'static str]) -> Result<Option<u64>, UwsgiError> {
        content_length(
            values
                .iter()
                .map(|v| (&b"CONTENT_LENGTH"[..], v.as_bytes())),
        )
    }

    #[test]
    fn content_length_rules() {
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&[""]), Ok(None));
        assert_eq!(cl(&["0"]), Ok(Some(0)));
        assert_eq!(cl(&["0042"]), Ok(Some(42)));
        assert_eq!(cl(&["18446744073709551615"]), Ok(Some(u64::MAX)));
        assert_eq!(cl(&["1", "1"]), Err(UwsgiError::DuplicateContentLength));
        assert_eq!(cl(&["", ""]), Err(UwsgiError::DuplicateContentLength));
        for bad in [
            "-1",
            "+1",
            " 1",
            "1 ",
            "1,1",
            "0x10",
            "18446744073709551616",
            "1.0",
        ] {
            assert_eq!(
                cl(&[bad]).unwrap_err().class(),
                "invalid_content_length",
                "{bad}"
            );
        }
    }

    #[test]
    fn body_limit() {
        let mut buf = BytesMut::new();
        let limits = UwsgiLimits {
            max_body_size: Some(10),
            ..UwsgiLimits::default()
        };
        let h = encode_packet(0, 0, &[("CONTENT_LENGTH", "11")], &limits, &mut buf).unwrap();
        let block = buf.split_off(HEADER_LEN).freeze();
        assert_eq!(
            UwsgiRequest::parse(h, block.clone(), &limits),
            Err(UwsgiError::BodyTooLarge {
                length: 11,
                limit: 10
            })
        );
        let ok = UwsgiRequest::parse(h, block, &UwsgiLimits::default()).unwrap();
        assert_eq!(ok.body_length, 11);
    }

    #[test]
    fn encoder_refuses_u16_overflow_at_the_exact_boundary() {
        let limits = UwsgiLimits::default();
        // One var of 4 + 1 + v bytes: v = 65530 gives exactly 65535.
        let key = "K";
        let fits = vec![b'v'; 65535 - 5];
        let mut buf = BytesMut::new();
        let h = encode_packet(0, 0, &[(key.as_bytes(), &fits[..])], &limits, &mut buf).unwrap();
        assert_eq!(h.datasize, 65535);
        assert_eq!(buf.len(), HEADER_LEN + 65535);
        assert_eq!(&buf[..4], &[0, 0xff, 0xff, 0]);
        let vars = parse_vars(&buf.split_off(HEADER_LEN).freeze(), 10).unwrap();
        assert_eq!(vars[0].1.len(), 65530);

        // One more byte: 65536 does not fit in datasize; nothing written.
        let over = vec![b'v'; 65535 - 4];
        let mut buf = BytesMut::new();
        assert_eq!(
            encode_packet(0, 0, &[(key.as_bytes(), &over[..])], &limits, &mut buf),
            Err(UwsgiError::BlockTooLarge {
                size: 65536,
                limit: 65535
            })
        );
        assert!(buf.is_empty());

        // Spread over many vars, the same boundary.
        let mut vars: Vec<(String, Vec<u8>)> = (0..15)
            .map(|i| (format!("K{i:02}"), vec![b'x'; 4362]))
            .collect();
        let total: usize = vars.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
        vars[0].1.extend(std::iter::repeat_n(b'x', 65535 - total));
        let mut buf = BytesMut::new();
        assert_eq!(
            encode_packet(0, 0, &vars, &limits, &mut buf)
                .unwrap()
                .datasize,
            65535
        );
        vars[1].1.push(b'x');
        let mut buf = BytesMut::new();
        assert_eq!(
            encode_packet(0, 0, &vars, &limits, &mut buf).unwrap_err(),
            UwsgiError::BlockTooLarge {
                size: 65536,
                limit: 65535
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn encoder_refuses_long_vars_empty_keys_and_configured_limits() {
        let limits = UwsgiLimits::default();
        let mut buf = BytesMut::new();
        let long = vec![b'k'; 65536];
        assert_eq!(
            encode_packet(0, 0, &[(&long[..], &b""[..])], &limits, &mut buf),
            Err(UwsgiError::VarTooLong { len: 65536 })
        );
        assert_eq!(
            encode_packet(0, 0, &[(&b"k"[..], &long[..])], &limits, &mut buf),
            Err(UwsgiError::VarTooLong { len: 65536 })
        );
        assert_eq!(
            encode_packet(0, 0, &[("a", "1"), ("", "x")], &limits, &mut buf),
            Err(UwsgiError::EmptyKey { offset: 1 })
        );
        let small = UwsgiLimits {
            max_block_size: 12,
            max_vars: 1,
            ..limits
        };
        assert!(encode_packet(0, 0, &[("KEY", "VALUE")], &small, &mut buf).is_ok());
        buf.clear();
        assert_eq!(
            encode_packet(0, 0, &[("KEY", "VALUE!")], &small, &mut buf),
            Err(UwsgiError::BlockTooLarge {
                size: 13,
                limit: 12
            })
        );
        assert_eq!(
            encode_packet(0, 0, &[("A", ""), ("B", "")], &small, &mut buf),
            Err(UwsgiError::TooManyVars { limit: 1 })
        );
        assert!(buf.is_empty());
    }
}
