//! Examples and integration tests of flexi-socket live in `examples/` and `tests/`.

// The README's Rust programs compile as doctests here, where the features
// they show (`tls`, `testing`) are always on, so the tour stays true.
// Its `rust,ignore` blocks are excerpts of compiled files: tests/readme.rs
// checks them, and that no block hides lines from a reader of the Markdown.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
