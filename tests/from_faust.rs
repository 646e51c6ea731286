//! The README's "From Python Faust" table against the examples: each row's faust-rs
//! spelling (its first code span, `…` standing for anything) is in the example the row
//! names, so an example that changes its API drags the table along.

use std::path::Path;

/// The rows of the table: (faust-rs cell, example name).
fn rows(readme: &str) -> Vec<(String, String)> {
    let section = readme
        .split("### From Python Faust")
        .nth(1)
        .expect("the README has a 'From Python Faust' section");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| Python Faust"))
        .skip(2) // the header and its rule
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            // Cells split on `|` but not on `\|` (a bar inside code).
            let line = line.replace("\\|", "\u{0}");
            let cells: Vec<String> = line
                .split('|')
                .map(|c| c.trim().replace('\u{0}', "|"))
                .collect();
            (cells[2].clone(), cells[3].clone())
        })
        .collect()
}

/// The first code span of a cell.
fn first_code(cell: &str) -> &str {
    cell.split('`').nth(1).unwrap_or_default()
}

/// Whether the pieces of `pattern` between `…` occur in `text` in order.
fn occurs(pattern: &str, text: &str) -> bool {
    let mut rest = text;
    pattern.split('…').all(|piece| match rest.find(piece) {
        Some(at) => {
            rest = &rest[at + piece.len()..];
            true
        }
        None => false,
    })
}

#[test]
fn every_spelling_in_the_faust_table_is_in_its_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let rows = rows(&readme);
    assert!(rows.len() >= 20, "the table was not found whole: {rows:?}");
    let mut missing = Vec::new();
    for (spelling, example) in &rows {
        let file = root.join("examples").join(format!("{example}.rs"));
        let source = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("the table names {}: {e}", file.display()));
        let code = first_code(spelling);
        assert!(!code.is_empty(), "a row without code: {spelling}");
        if !occurs(code, &source) {
            missing.push(format!("`{code}` is not in examples/{example}.rs"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn a_spelling_matches_in_order_with_anything_between() {
    assert!(occurs(
        "faust::main!(id = \"…\", partitions = …)",
        "faust::main!(id = \"wc\", partitions = 4);"
    ));
    assert!(!occurs(
        "partitions = …, id = \"…\"",
        "faust::main!(id = \"wc\", partitions = 4);"
    ));
    assert_eq!(first_code("`a`, `b`"), "a");
    let table = "### From Python Faust\n\n| Python Faust | faust-rs | example |\n|---|---|---|\n\
                 | `x` | `.update(&…, \\|n\\| n)` | word_count |\n\nafter";
    assert_eq!(
        rows(table),
        [("`.update(&…, |n| n)`".to_owned(), "word_count".to_owned())]
    );
}
