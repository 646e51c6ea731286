//! Tables: declarations from `#[faust::table]`. The registry and the declaration shape
//! live here; stores, changelogs and recovery are the tables issue's to fill.

use std::marker::PhantomData;

/// What `#[faust::table]` registers.
#[derive(Debug)]
pub struct TableDescriptor {
    pub name: &'static str,
    pub key_type: &'static str,
    pub value_type: &'static str,
    /// `None`: the app's default topic partitions.
    pub partitions: Option<i32>,
    pub global: bool,
    pub location: &'static str,
}

inventory::collect!(TableDescriptor);

/// A table of `K` to `V`, declared with `#[faust::table]`.
pub struct Table<K, V> {
    descriptor: &'static TableDescriptor,
    default: fn() -> V,
    _key: PhantomData<fn() -> K>,
}

impl<K, V> Table<K, V> {
    #[doc(hidden)]
    pub const fn new(descriptor: &'static TableDescriptor, default: fn() -> V) -> Self {
        Table {
            descriptor,
            default,
            _key: PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.descriptor.name
    }

    pub fn descriptor(&self) -> &'static TableDescriptor {
        self.descriptor
    }

    /// The value a missing key reads as.
    pub fn default_value(&self) -> V {
        (self.default)()
    }

    /// The changelog topic of this table in the app `app_id`.
    pub fn changelog_topic(&self, app_id: &str) -> String {
        format!("{app_id}-{}-changelog", self.descriptor.name)
    }
}
