//! DC-09 encryption for the alarm tests, written apart from the example's
//! code: AES-CBC with a zero IV (RustCrypto), a fixed padding of `#`s and
//! `|` in front of the content, upper-case hex.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};

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
    match key.len() {
        16 => encrypt::<aes::Aes128>(&key, &mut buffer),
        24 => encrypt::<aes::Aes192>(&key, &mut buffer),
        _ => encrypt::<aes::Aes256>(&key, &mut buffer),
    }
    buffer.iter().map(|b| format!("{b:02X}")).collect()
}

/// Hex `sealed` decrypted with `key` (hex): the whole plaintext, padding
/// included.
pub fn unseal(key: &str, sealed: &str) -> String {
    let key = bytes(key);
    let mut buffer = bytes(sealed);
    assert_eq!(buffer.len() % 16, 0, "{sealed:?} is not whole blocks");
    match key.len() {
        16 => decrypt::<aes::Aes128>(&key, &mut buffer),
        24 => decrypt::<aes::Aes192>(&key, &mut buffer),
        _ => decrypt::<aes::Aes256>(&key, &mut buffer),
    }
    String::from_utf8(buffer).expect("an ASCII plaintext")
}

fn encrypt<C: BlockCipher + BlockEncryptMut + KeyInit>(key: &[u8], buffer: &mut [u8]) {
    let len = buffer.len();
    cbc::Encryptor::<C>::new_from_slices(key, &IV)
        .unwrap()
        .encrypt_padded_mut::<NoPadding>(buffer, len)
        .unwrap();
}

fn decrypt<C: BlockCipher + BlockDecryptMut + KeyInit>(key: &[u8], buffer: &mut [u8]) {
    cbc::Decryptor::<C>::new_from_slices(key, &IV)
        .unwrap()
        .decrypt_padded_mut::<NoPadding>(buffer)
        .unwrap();
}

/// The bytes of hex digits.
pub fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect()
}
