//! Compile-time behaviour of the macros: what compiles, and the error for each mistake.
//! Regenerate the expected errors with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn macros() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
