//! DC-09 encryption, shared by the `alarm_receiver` and `alarm_panel`
//! examples: AES-128, -192 or -256 in CBC mode with an all-zero IV (RustCrypto's
//! `aes` and `cbc`), over everything after the data's `[`, sent as hex.
//!
//! ```text
//! "*SIA-DCS"0002R1L0#1234[ hex( pad | #1234|Nri1/BA01] [X..] _14:03:07,05-21-2025 )
//! ```
//!
//! The padding in front is random bytes other than `[`, `]` and `|`, so that
//! the content is a whole number of 16-byte blocks; the `|` after it says
//! where it ends.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};

const BLOCK: usize = 16;
const ZERO_IV: [u8; BLOCK] = [0; BLOCK];

/// An account's key: 16, 24 or 32 bytes, for AES-128, -192 or -256.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    /// The length, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(AES-{})", self.0.len() * 8)
    }
}

impl Key {
    /// From 32, 48 or 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        if ![32, 48, 64].contains(&hex.len()) {
            return Err(format!(
                "a key has 32, 48 or 64 hex digits (AES-128, -192, -256), not {}",
                hex.len()
            ));
        }
        let bytes = from_hex(hex.as_bytes()).ok_or("a key is hex digits only")?;
        Ok(Self(bytes))
    }

    /// `content` with random padding in front and `|` after it, encrypted,
    /// as upper-case hex.
    pub fn seal(&self, content: &[u8]) -> String {
        // 1 to 16 bytes: the `|` must follow something.
        let pad_len = BLOCK - (content.len() + 1) % BLOCK;
        let mut plain = random_padding(pad_len);
        plain.push(b'|');
        plain.extend_from_slice(content);
        debug_assert!(plain.len().is_multiple_of(BLOCK));
        let cipher = self.encrypt(&mut plain);
        cipher.iter().map(|byte| format!("{byte:02X}")).collect()
    }

    /// The content of hex `sealed`: decrypted, the padding and its `|` taken
    /// off. `None` if it is not whole blocks of hex or has no `|` where the
    /// padding ends.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let plain = self.decrypt_hex(sealed)?;
        let pad = plain.iter().position(|b| matches!(b, b'|' | b'[' | b']'))?;
        (plain[pad] == b'|').then(|| plain[pad + 1..].to_vec())
    }

    /// The whole plaintext of hex `sealed`, padding included, if it is whole
    /// blocks of hex.
    pub fn decrypt_hex(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let mut bytes = from_hex(sealed)?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(BLOCK) {
            return None;
        }
        self.decrypt(&mut bytes).map(<[u8]>::to_vec)
    }

    fn encrypt(&self, plain: &mut [u8]) -> Vec<u8> {
        let cipher = match self.0.len() {
            16 => encrypt_cbc::<aes::Aes128>(&self.0, plain),
            24 => encrypt_cbc::<aes::Aes192>(&self.0, plain),
            _ => encrypt_cbc::<aes::Aes256>(&self.0, plain),
        };
        cipher.expect("a key of a valid length, and whole blocks")
    }

    fn decrypt<'b>(&self, cipher: &'b mut [u8]) -> Option<&'b [u8]> {
        match self.0.len() {
            16 => decrypt_cbc::<aes::Aes128>(&self.0, cipher),
            24 => decrypt_cbc::<aes::Aes192>(&self.0, cipher),
            _ => decrypt_cbc::<aes::Aes256>(&self.0, cipher),
        }
    }
}

/// `plain` (whole blocks) encrypted in place with AES of `C`'s size.
fn encrypt_cbc<C>(key: &[u8], plain: &mut [u8]) -> Option<Vec<u8>>
where
    C: BlockCipher + BlockEncryptMut + KeyInit,
{
    let len = plain.len();
    let encryptor = cbc::Encryptor::<C>::new_from_slices(key, &ZERO_IV).ok()?;
    let cipher = encryptor.encrypt_padded_mut::<NoPadding>(plain, len).ok()?;
    Some(cipher.to_vec())
}

/// `cipher` (whole blocks) decrypted in place with AES of `C`'s size.
fn decrypt_cbc<'b, C>(key: &[u8], cipher: &'b mut [u8]) -> Option<&'b [u8]>
where
    C: BlockCipher + BlockDecryptMut + KeyInit,
{
    let decryptor = cbc::Decryptor::<C>::new_from_slices(key, &ZERO_IV).ok()?;
    decryptor.decrypt_padded_mut::<NoPadding>(cipher).ok()
}

/// `len` random bytes from `!` to `~`, none of them `[`, `]` or `|`.
fn random_padding(len: usize) -> Vec<u8> {
    const ALLOWED: &[u8] = b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ\\^_`abcdefghijklmnopqrstuvwxyz{}~";
    let mut random = vec![0; len];
    getrandom::getrandom(&mut random).expect("the system's random source");
    random
        .iter()
        .map(|&byte| ALLOWED[usize::from(byte) % ALLOWED.len()])
        .collect()
}

fn from_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let digits = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(digits, 16).ok()
        })
        .collect()
}
