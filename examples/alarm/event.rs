//! What the `alarm_receiver` example prints for an accepted event: one line of
//! `key=value` pairs, or with `--json` one JSON object, in the order the
//! fields were added.

use std::fmt::Write;

/// An accepted event's fields, ready to print.
#[derive(Debug, Default)]
pub struct Event {
    fields: Vec<(&'static str, Value)>,
}

#[derive(Debug)]
enum Value {
    Text(String),
    List(Vec<String>),
}

impl Event {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field.
    #[must_use]
    pub fn with(mut self, key: &'static str, value: impl AsRef<[u8]>) -> Self {
        self.fields.push((key, Value::Text(lossy(value))));
        self
    }

    /// Adds a field of several values (none: no field).
    #[must_use]
    pub fn with_list<T: AsRef<[u8]>>(mut self, key: &'static str, values: &[T]) -> Self {
        if !values.is_empty() {
            self.fields
                .push((key, Value::List(values.iter().map(lossy).collect())));
        }
        self
    }

    /// Adds the fields of a Contact ID event.
    #[must_use]
    pub fn with_contact_id(self, event: &ContactId<'_>) -> Self {
        self.with("qualifier", event.qualifier.as_str())
            .with("code", event.code)
            .with("group", event.group)
            .with("zone", event.zone)
    }

    /// `key=value key="a value" ...`: a value is quoted (JSON style) when it
    /// is empty or holds a space, `=`, a quote or a control character; a
    /// list repeats its key.
    pub fn text_line(&self) -> String {
        let mut pairs = Vec::new();
        for (key, value) in &self.fields {
            let values = match value {
                Value::Text(text) => std::slice::from_ref(text),
                Value::List(list) => list.as_slice(),
            };
            for value in values {
                let plain = !value.is_empty()
                    && !value.chars().any(|c| {
                        c.is_whitespace() || c.is_control() || matches!(c, '=' | '"' | '\\')
                    });
                if plain {
                    pairs.push(format!("{key}={value}"));
                } else {
                    pairs.push(format!("{key}={}", json_string(value)));
                }
            }
        }
        pairs.join(" ")
    }

    /// `{"key":"value","list":["a","b"],...}` on one line.
    pub fn json_line(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Text(text) => json_string(text),
                    Value::List(list) => json_list(list.as_slice()),
                };
                format!("{}:{value}", json_string(key))
            })
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    /// [`json_line`](Self::json_line) when `json`, else
    /// [`text_line`](Self::text_line).
    pub fn line(&self, json: bool) -> String {
        if json {
            self.json_line()
        } else {
            self.text_line()
        }
    }
}

/// `["a","b"]`: each value as a JSON string (bytes that are not UTF-8 as
/// U+FFFD).
pub fn json_list<T: AsRef<[u8]>>(values: &[T]) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|value| json_string(&lossy(value)))
        .collect();
    format!("[{}]", items.join(","))
}

/// Bytes that are not UTF-8 are shown as U+FFFD.
fn lossy(bytes: impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(bytes.as_ref()).into_owned()
}

/// `text` as a JSON string literal: quotes, backslashes and control
/// characters escaped, so a line never breaks and a quote never ends it early.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Contact ID event, `QXYZ GG CCC`: qualifier, event code, group
/// (partition) and zone or user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactId<'a> {
    pub qualifier: Qualifier,
    pub code: &'a str,
    pub group: &'a str,
    pub zone: &'a str,
}

impl<'a> ContactId<'a> {
    /// The event from its parts; digits are 0–9 or B–F (Contact ID has no A).
    pub fn parse(
        qualifier: Qualifier,
        code: &'a [u8],
        group: &'a [u8],
        zone: &'a [u8],
    ) -> Option<Self> {
        let digits = |part: &'a [u8], len: usize| {
            let valid = part.len() == len
                && part
                    .iter()
                    .all(|&b| b.is_ascii_digit() || (b'B'..=b'F').contains(&b));
            // Every accepted byte is ASCII.
            valid.then(|| std::str::from_utf8(part).ok()).flatten()
        };
        Some(Self {
            qualifier,
            code: digits(code, 3)?,
            group: digits(group, 2)?,
            zone: digits(zone, 3)?,
        })
    }
}

/// What a Contact ID event says about its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// A new event, or an opening.
    New,
    /// A restore, or a closing.
    Restore,
    /// A condition reported before and still present.
    Status,
}

impl Qualifier {
    /// Contact ID's own digit: `1`, `3` or `6`.
    pub fn from_digit(digit: u8) -> Option<Self> {
        match digit {
            b'1' => Some(Self::New),
            b'3' => Some(Self::Restore),
            b'6' => Some(Self::Status),
            _ => None,
        }
    }

    /// The letter Sur-Gard MLR2 automation lines put in its place: `E` new
    /// event, `R` restore, `P` previous.
    pub fn from_letter(letter: u8) -> Option<Self> {
        match letter {
            b'E' => Some(Self::New),
            b'R' => Some(Self::Restore),
            b'P' => Some(Self::Status),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Restore => "restore",
            Self::Status => "status",
        }
    }
}
