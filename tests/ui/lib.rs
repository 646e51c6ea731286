//! Nothing here: the tests are in `macros.rs`, the cases in `pass/` and `fail/`.
