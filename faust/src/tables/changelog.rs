//! What a table's changelog records carry besides key and value: the headers naming
//! the event that caused them (`event::source_headers`) and, on global tables, the
//! worker that wrote them.

/// On global tables' records: the worker that wrote it (its follower skips its own).
pub(crate) const WRITER: &str = "faust-writer";
