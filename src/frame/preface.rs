//! The connection preface: 8 bytes each side sends before its first frame.
//!
//! ```text
//! 9A 55 57 31 FF FF 0D 0A      "\x9a" "UW" "1" "\xff\xff" "\r\n"
//! ```
//!
//! Byte 3 is the protocol major version (`'1'` for uwire/1).
//!
//! The preface can never be the start of a classic uwsgi packet: read as a
//! uwsgi header it says modifier1 = 0x9A, datasize = 0x5755 (22357, bytes
//! 1..3 little-endian) and then its vars block would open with a key length
//! of 0xFFFF (65535), longer than the whole 22357-byte block. No well-formed
//! uwsgi packet starts this way, so one listening socket can tell the two
//! protocols apart from the first byte alone (0x9A is no modifier1 that
//! uWSGI assigns) and confirm with the full 8 bytes. The 0xFF bytes also make
//! it invalid as HTTP/1 text and as UTF-8.

use super::{DecodeError, ErrorClass};

/// Length of the preface.
pub const PREFACE_LEN: usize = 8;
/// The uwire/1 preface.
pub const PREFACE: [u8; PREFACE_LEN] = [0x9A, b'U', b'W', b'1', 0xFF, 0xFF, b'\r', b'\n'];
/// Index of the version byte.
pub const VERSION_INDEX: usize = 3;
/// The version byte this implementation speaks.
pub const VERSION: u8 = b'1';

/// Whether a connection whose first byte is `first` is a uwire connection
/// (as opposed to a classic uwsgi one).
pub fn is_uwire_first_byte(first: u8) -> bool {
    first == PREFACE[0]
}

/// Checks the start of a connection.
///
/// Returns `Ok(true)` once all 8 bytes are present and valid, `Ok(false)`
/// while the bytes seen so far are a valid prefix, and an error as soon as a
/// byte differs: `unsupported_version` when only the version byte differs,
/// `bad_preface` otherwise.
pub fn check(src: &[u8]) -> Result<bool, DecodeError> {
    let n = src.len().min(PREFACE_LEN);
    for (i, (&got, &want)) in src[..n].iter().zip(PREFACE.iter()).enumerate() {
        if got != want {
            if i == VERSION_INDEX && got.is_ascii_digit() {
                return Err(DecodeError::connection(
                    ErrorClass::UnsupportedVersion,
                    "peer speaks a uwire version this implementation does not",
                ));
            }
            return Err(DecodeError::connection(
                ErrorClass::BadPreface,
                "connection does not start with the uwire preface",
            ));
        }
    }
    Ok(n == PREFACE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_preface_prefixes() {
        for n in 0..PREFACE_LEN {
            assert!(!check(&PREFACE[..n]).unwrap());
        }
        assert!(check(&PREFACE).unwrap());
    }

    #[test]
    fn read_preface_errors() {
        assert_eq!(
            check(b"GET / HT").unwrap_err().class(),
            ErrorClass::BadPreface
        );
        let mut v2 = PREFACE;
        v2[VERSION_INDEX] = b'2';
        assert_eq!(
            check(&v2).unwrap_err().class(),
            ErrorClass::UnsupportedVersion
        );
        assert_eq!(check(&[0x00]).unwrap_err().class(), ErrorClass::BadPreface);
    }

    #[test]
    fn preface_is_never_a_uwsgi_packet() {
        let datasize = u16::from_le_bytes([PREFACE[1], PREFACE[2]]);
        let first_key_len = u16::from_le_bytes([PREFACE[4], PREFACE[5]]);
        assert!(first_key_len as u32 + 2 > datasize as u32);
    }
}
