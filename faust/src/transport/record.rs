//! A message on its way out (`Record`, as bytes) and where it landed (`Delivered`):
//! what every producer backend takes and gives.

use crate::event::Header;

/// Where a sent message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The partition it went to.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// One message to send, as bytes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Record<'a> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    /// `None` lets the partitioner choose (by key hash, or spread when there is no key).
    pub(crate) partition: Option<i32>,
    pub(crate) headers: &'a [Header],
    /// Milliseconds since the Unix epoch; `None`: when it is sent.
    pub(crate) timestamp: Option<i64>,
}
