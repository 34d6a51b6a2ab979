//! Macro diagnostics (one `tests/ui/*.rs` case each) and a case using every form
//! that must compile cleanly.

// Also compiled here, so that `cargo clippy --all-targets` checks the generated
// code against the pass case's `#![deny(warnings, clippy::pedantic)]`.
#[allow(dead_code)]
#[path = "ui/pass/every_form.rs"]
mod every_form;

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
