//! Checksums for `after_receive` (verify and strip) and `before_send` (append).
//!
//! The CRCs come from the [`crc`] crate; every checksum is available as a
//! number, as big-endian bytes or as fixed-width upper-case ASCII hex.

use crc::{CRC_16_ARC, CRC_16_IBM_3740, CRC_32_ISO_HDLC, Crc};

const CRC16_ARC: Crc<u16> = Crc::<u16>::new(&CRC_16_ARC);
const CRC16_CCITT_FALSE: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);
const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// A checksum algorithm.
///
/// Binary forms are big-endian and [`width`](Self::width) bytes long; hex forms
/// are upper-case and twice as many characters, and are compared
/// case-insensitively.
///
/// In `after_receive`, drop frames whose trailing checksum is wrong and pass
/// the payload on; in `before_send`, append the checksum:
///
/// ```
/// use flexi_socket::checksum::Checksum;
/// use flexi_socket::{after_receive, before_send, Message};
///
/// #[after_receive]
/// async fn verify(msg: Message) -> Option<Message> {
///     // Frames are `payload` followed by 4 hex digits of CRC-16/ARC.
///     let payload = Checksum::Crc16Arc.strip_hex(msg.as_bytes())?;
///     Some(Message::new(payload.to_vec()))
/// }
///
/// #[before_send]
/// async fn sign(msg: Message) -> Message {
///     Message::new(Checksum::Crc16Arc.append_hex(msg.as_bytes()))
/// }
///
/// assert_eq!(Checksum::Crc16Arc.to_hex(b"123456789"), "BB3D");
/// assert!(Checksum::Crc16Arc.verify_hex(b"123456789", b"bb3d"));
/// assert_eq!(Checksum::Crc16Arc.strip_hex(b"123456789BB3D"), Some(&b"123456789"[..]));
/// assert_eq!(Checksum::Crc16Arc.strip_hex(b"123456789BB3E"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Checksum {
    /// CRC-16/ARC (poly 0x8005 reflected, init 0; "123456789" → 0xBB3D), as in SIA DC-09.
    Crc16Arc,
    /// CRC-16/CCITT-FALSE, catalogued as CRC-16/IBM-3740 (poly 0x1021, init 0xFFFF; → 0x29B1).
    Crc16CcittFalse,
    /// CRC-32/ISO-HDLC, the common "CRC-32" of zip and Ethernet (→ 0xCBF43926).
    Crc32,
    /// XOR of all bytes (one byte).
    Xor8,
    /// Sum of all bytes modulo 256 (one byte).
    Sum8,
    /// Sum of all bytes modulo 65536 (two bytes).
    Sum16,
}

impl Checksum {
    /// Size of the checksum in bytes; its hex form has twice as many characters.
    #[must_use]
    pub const fn width(self) -> usize {
        match self {
            Self::Xor8 | Self::Sum8 => 1,
            Self::Crc16Arc | Self::Crc16CcittFalse | Self::Sum16 => 2,
            Self::Crc32 => 4,
        }
    }

    /// The checksum of `data` as a number.
    #[must_use]
    pub fn compute(self, data: &[u8]) -> u32 {
        match self {
            Self::Crc16Arc => u32::from(CRC16_ARC.checksum(data)),
            Self::Crc16CcittFalse => u32::from(CRC16_CCITT_FALSE.checksum(data)),
            Self::Crc32 => CRC32.checksum(data),
            Self::Xor8 => u32::from(data.iter().fold(0u8, |acc, &b| acc ^ b)),
            Self::Sum8 => u32::from(data.iter().fold(0u8, |acc, &b| acc.wrapping_add(b))),
            Self::Sum16 => u32::from(
                data.iter()
                    .fold(0u16, |acc, &b| acc.wrapping_add(u16::from(b))),
            ),
        }
    }

    /// The checksum of `data` as [`width`](Self::width) big-endian bytes.
    #[must_use]
    pub fn to_bytes(self, data: &[u8]) -> Vec<u8> {
        self.compute(data).to_be_bytes()[4 - self.width()..].to_vec()
    }

    /// The checksum of `data` as upper-case hex, zero-padded to 2 × [`width`](Self::width).
    #[must_use]
    pub fn to_hex(self, data: &[u8]) -> String {
        format!("{:01$X}", self.compute(data), 2 * self.width())
    }

    /// Whether `sum` is the binary checksum of `data` (exact width, big-endian).
    #[must_use]
    pub fn verify_bytes(self, data: &[u8], sum: &[u8]) -> bool {
        sum == self.to_bytes(data).as_slice()
    }

    /// Whether `hex` is the hex checksum of `data` (exact width, any case).
    #[must_use]
    pub fn verify_hex(self, data: &[u8], hex: &[u8]) -> bool {
        hex.eq_ignore_ascii_case(self.to_hex(data).as_bytes())
    }

    /// `data` followed by its binary checksum.
    #[must_use]
    pub fn append_binary(self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + self.width());
        out.extend_from_slice(data);
        out.extend_from_slice(&self.to_bytes(data));
        out
    }

    /// `data` followed by its hex checksum.
    #[must_use]
    pub fn append_hex(self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 2 * self.width());
        out.extend_from_slice(data);
        out.extend_from_slice(self.to_hex(data).as_bytes());
        out
    }

    /// The payload of a `frame` ending in a binary checksum, or `None` if the
    /// frame is too short or the checksum is wrong.
    #[must_use]
    pub fn strip_binary(self, frame: &[u8]) -> Option<&[u8]> {
        let (data, sum) = frame.split_at(frame.len().checked_sub(self.width())?);
        self.verify_bytes(data, sum).then_some(data)
    }

    /// The payload of a `frame` ending in a hex checksum, or `None` if the
    /// frame is too short or the checksum is wrong.
    #[must_use]
    pub fn strip_hex(self, frame: &[u8]) -> Option<&[u8]> {
        let (data, hex) = frame.split_at(frame.len().checked_sub(2 * self.width())?);
        self.verify_hex(data, hex).then_some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::Checksum::{self, Crc16Arc, Crc16CcittFalse, Crc32, Sum8, Sum16, Xor8};

    const ALL: [Checksum; 6] = [Crc16Arc, Crc16CcittFalse, Crc32, Xor8, Sum8, Sum16];
    const CHECK: &[u8] = b"123456789";

    #[test]
    fn standard_check_values() {
        assert_eq!(Crc16Arc.compute(CHECK), 0xBB3D);
        assert_eq!(Crc16CcittFalse.compute(CHECK), 0x29B1);
        assert_eq!(Crc32.compute(CHECK), 0xCBF4_3926);
        assert_eq!(Crc16Arc.to_hex(CHECK), "BB3D");
        assert_eq!(Crc16CcittFalse.to_hex(CHECK), "29B1");
        assert_eq!(Crc32.to_hex(CHECK), "CBF43926");
        assert_eq!(Crc32.to_bytes(CHECK), [0xCB, 0xF4, 0x39, 0x26]);
    }

    #[test]
    fn xor_and_sums_on_small_inputs() {
        assert_eq!(Xor8.compute(&[0x01, 0x02, 0x04, 0x08]), 0x0F);
        assert_eq!(Xor8.compute(&[0xAA, 0xAA]), 0);
        // 0x31 + ... + 0x39 = 0x1DD: Sum8 keeps the low byte, Sum16 all of it.
        assert_eq!(Sum8.compute(CHECK), 0xDD);
        assert_eq!(Sum16.compute(CHECK), 0x01DD);
        assert_eq!(Sum16.compute(&[0xFF; 258]), (0xFF * 258) % 0x1_0000);
        assert_eq!(Sum16.compute(&[0xFF; 300]), (0xFF * 300) % 0x1_0000);
    }

    #[test]
    fn hex_has_fixed_width_and_leading_zeros() {
        assert_eq!(Xor8.to_hex(&[0x01, 0x02]), "03");
        assert_eq!(Sum16.to_hex(&[0x01]), "0001");
        assert_eq!(Sum16.to_bytes(&[0x01]), [0x00, 0x01]);
        for sum in ALL {
            assert_eq!(sum.to_hex(CHECK).len(), 2 * sum.width(), "{sum:?}");
            assert_eq!(sum.to_bytes(CHECK).len(), sum.width(), "{sum:?}");
        }
    }

    #[test]
    fn verify_hex_ignores_case_but_not_width() {
        assert!(Crc16Arc.verify_hex(CHECK, b"BB3D"));
        assert!(Crc16Arc.verify_hex(CHECK, b"bb3d"));
        assert!(Crc16Arc.verify_hex(CHECK, b"bB3d"));
        assert!(!Crc16Arc.verify_hex(CHECK, b"0BB3D"));
        assert!(!Crc16Arc.verify_hex(CHECK, b"B3D"));
        assert!(!Sum16.verify_hex(&[0x01], b"+001"));
    }

    #[test]
    fn wrong_checksum_is_rejected() {
        assert!(!Crc16Arc.verify_hex(CHECK, b"BB3E"));
        assert!(!Crc16Arc.verify_hex(b"123456780", b"BB3D"));
        assert!(!Crc32.verify_bytes(CHECK, &[0xCB, 0xF4, 0x39, 0x27]));
        assert!(!Crc32.verify_bytes(CHECK, &[0xF4, 0x39, 0x26]));
        assert_eq!(Crc16Arc.strip_hex(b"123456789BB3E"), None);
        assert_eq!(Crc16Arc.strip_binary(b"123456789\xBB\x3E"), None);
    }

    #[test]
    fn append_then_strip_round_trips() {
        for sum in ALL {
            let framed = sum.append_hex(CHECK);
            assert_eq!(sum.strip_hex(&framed), Some(CHECK), "{sum:?}");
            let framed = sum.append_binary(CHECK);
            assert_eq!(sum.strip_binary(&framed), Some(CHECK), "{sum:?}");
            assert!(sum.verify_bytes(CHECK, &framed[CHECK.len()..]), "{sum:?}");
        }
        assert_eq!(Crc16Arc.append_hex(CHECK), b"123456789BB3D");
    }

    #[test]
    fn empty_input() {
        assert_eq!(Crc16Arc.compute(b""), 0);
        assert_eq!(Crc16CcittFalse.compute(b""), 0xFFFF);
        assert_eq!(Crc32.compute(b""), 0);
        for sum in [Xor8, Sum8, Sum16] {
            assert_eq!(sum.compute(b""), 0, "{sum:?}");
        }
        assert_eq!(Crc32.to_hex(b""), "00000000");
        // A frame that is only a checksum has an empty payload; a shorter one has none.
        assert_eq!(Crc16CcittFalse.strip_hex(b"ffff"), Some(&b""[..]));
        assert_eq!(Crc16Arc.strip_hex(b"000"), None);
        assert_eq!(Crc32.strip_binary(b""), None);
    }
}
