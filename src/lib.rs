//! Examples and integration tests of flexi-socket live in `examples/` and `tests/`.
