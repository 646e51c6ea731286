//! Compile-time behaviour of the macros: what compiles, and the error for each mistake.
//! Regenerate the expected errors with `TRYBUILD=overwrite cargo test -p faust-ui-tests`.

#[test]
fn macros() {
    let cases = trybuild::TestCases::new();
    cases.pass("pass/*.rs");
    cases.compile_fail("fail/*.rs");
}
