//! DC-09 encryption for the alarm tests, written apart from the example's
//! code: AES-CBC with a zero IV (RustCrypto), a fixed padding of `#`s and
//! `|` in front of the content, upper-case hex.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

const IV: [u8; 16] = [0; 16];

/// Keys of each size, as `--key` takes them.
pub const KEY_128: &str = "000102030405060708090A0B0C0D0E0F";
pub const KEY_192: &str = "F0E0D0C0B0A09080706050403020100F0E0D0C0B0A090807";
pub const KEY_256: &str = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4";

/// `#` padding, `|`, then `content`, encrypted with `key` (hex), as hex.
pub fn seal(key: &str, content: &str) -> String {
    let pad = 16 - (content.len() + 1) % 16;
    let plain = format!("{}|{content}", "#".repeat(pad));
    seal_raw(key, plain.as_bytes())
}

/// `plain` (whole blocks) encrypted with `key` (hex), as hex.
pub fn seal_raw(key: &str, plain: &[u8]) -> String {
    assert_eq!(plain.len() % 16, 0, "whole blocks");
    let key = bytes(key);
    let mut buffer = plain.to_vec();
    let len = buffer.len();
    let cipher = match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, &IV)
            .unwrap()
            .encrypt_padded_mut::<NoPadding>(&mut buffer, len)
            .unwrap()
            .to_vec(),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(&key, &IV)
            .unwrap()
            .encrypt_padded_mut::<NoPadding>(&mut buffer, len)
            .unwrap()
            .to_vec(),
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &IV)
            .unwrap()
            .encrypt_padded_mut::<NoPadding>(&mut buffer, len)
            .unwrap()
            .to_vec(),
    };
    cipher.iter().map(|b| format!("{b:02X}")).collect()
}

/// Hex `sealed` decrypted with `key` (hex): the whole plaintext, padding
/// included.
pub fn unseal(key: &str, sealed: &str) -> String {
    let key = bytes(key);
    let mut buffer = bytes(sealed);
    assert_eq!(buffer.len() % 16, 0, "{sealed:?} is not whole blocks");
    let plain = match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &IV)
            .unwrap()
            .decrypt_padded_mut::<NoPadding>(&mut buffer)
            .unwrap()
            .to_vec(),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &IV)
            .unwrap()
            .decrypt_padded_mut::<NoPadding>(&mut buffer)
            .unwrap()
            .to_vec(),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &IV)
            .unwrap()
            .decrypt_padded_mut::<NoPadding>(&mut buffer)
            .unwrap()
            .to_vec(),
    };
    String::from_utf8(plain).expect("an ASCII plaintext")
}

/// The bytes of hex digits.
pub fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect()
}
