//! The line echo of the hand-written baselines that answer a whole read
//! with one write (`baseline_batching` over TCP, `baseline_tls` over TLS):
//! every line a read completes goes back at once, and only an incomplete
//! line waits between reads.
//!
//! Lines are bounded like `LinesCodec::new_with_max_length(64 * 1024)`: a
//! longer one is dropped and the next line is served; `\r\n` comes back as
//! `\n`.

use bytes::BytesMut;

/// Longest line echoed, without its newline.
pub const MAX_LINE: usize = 64 * 1024;

/// One connection's state between reads: an incomplete line, and whether
/// it is inside an oversize line being dropped.
#[derive(Debug, Default)]
pub struct LineEcho {
    /// Usually empty, and then holding no memory (see [`LineEcho::settle`]).
    pending: BytesMut,
    discarding: bool,
}

impl LineEcho {
    /// Appends to `output` every line `data` completes, each ending in `\n`;
    /// keeps an incomplete line for the next read.
    pub fn complete_lines(&mut self, mut data: &[u8], output: &mut Vec<u8>) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let line = if self.pending.is_empty() {
                &data[..end]
            } else {
                self.pending.extend_from_slice(&data[..end]);
                &self.pending[..]
            };
            if !std::mem::take(&mut self.discarding) && line.len() <= MAX_LINE {
                output.reserve(data.len() + line.len());
                output.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                output.push(b'\n');
            }
            self.pending.clear();
            data = &data[end + 1..];
        }
        if self.discarding || self.pending.len() + data.len() > MAX_LINE {
            self.pending.clear();
            self.discarding = true;
        } else {
            self.pending.extend_from_slice(data);
        }
    }

    /// Frees the incomplete-line buffer once it is empty, so an idle
    /// connection holds no memory.
    pub fn settle(&mut self) {
        if self.pending.is_empty() {
            self.pending = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(echo: &mut LineEcho, data: &[u8]) -> Vec<u8> {
        let mut output = Vec::new();
        echo.complete_lines(data, &mut output);
        output
    }

    #[test]
    fn echoes_complete_lines_and_keeps_the_rest() {
        let mut echo = LineEcho::default();
        assert_eq!(lines(&mut echo, b"a\r\nbc\nde"), b"a\nbc\n");
        assert_eq!(&echo.pending[..], b"de");
        assert_eq!(lines(&mut echo, b"f\ng"), b"def\n");
        assert_eq!(&echo.pending[..], b"g");
    }

    #[test]
    fn drops_an_oversize_line_and_serves_the_next() {
        let mut echo = LineEcho::default();
        let long = vec![b'x'; MAX_LINE];
        assert!(lines(&mut echo, &long).is_empty());
        assert!(!echo.discarding);
        assert!(lines(&mut echo, b"x").is_empty());
        assert!(echo.discarding && echo.pending.is_empty());
        assert_eq!(lines(&mut echo, b"xx\nok\n"), b"ok\n");
        let mut exact = long.clone();
        exact.push(b'\n');
        assert_eq!(lines(&mut echo, &exact), exact);
    }
}
