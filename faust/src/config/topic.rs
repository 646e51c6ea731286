//! Topics as the app declares them: which ones the worker creates, and with what.

use std::time::Duration;

/// A topic declared in code: its partitions, replicas and settings when the worker
/// creates it, and what the worker checks when it exists. Faust's
/// `app.topic(name, partitions=, replicas=, retention=, compacting=, config=, internal=)`:
///
/// ```
/// use std::time::Duration;
/// let posts = faust::Topic::new("posts")
///     .partitions(12)
///     .retention(Duration::from_secs(7 * 24 * 3600))
///     .config("max.message.bytes", "2097152")
///     .create(true);
/// # let _ = faust::App::builder("word-count").topic(posts);
/// ```
///
/// In `faust::main!`, one `topic = ...` per topic. The name may hold `{app_id}`.
/// Declaring an internal topic (a changelog, say) adds settings to the ones the worker
/// gives it. A topic that exists is never changed: where it disagrees with its
/// declaration, the worker logs a warning saying what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub(crate) name: String,
    pub(crate) partitions: Option<i32>,
    pub(crate) replicas: Option<i32>,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) create: bool,
}

impl Topic {
    /// The topic `name`, with the app's defaults.
    pub fn new(name: impl Into<String>) -> Topic {
        Topic {
            name: name.into(),
            partitions: None,
            replicas: None,
            settings: Vec::new(),
            create: false,
        }
    }

    /// Its partition count (default: the app's `partitions`).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Its replication factor (default: the app's `topic_replication_factor`), at most
    /// the cluster's broker count.
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// How long the broker keeps its records (`retention.ms`).
    pub fn retention(self, retention: Duration) -> Self {
        let ms = retention.as_millis().to_string();
        self.config("retention.ms", &ms)
    }

    /// Keep only each key's latest record (`cleanup.policy=compact`), as Faust's
    /// `compacting=True`; with a [`Topic::retention`], `compact,delete`.
    pub fn compacting(self, compacting: bool) -> Self {
        let policy = if compacting { "compact" } else { "delete" };
        self.config("cleanup.policy", policy)
    }

    /// Any topic setting (`max.message.bytes`, `segment.ms`, ...), as Kafka names it.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Create it when it is missing (Faust's `internal=True`). Without this only the
    /// app's internal topics are created (see [`CreateTopics`]).
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Its settings as they are sent when it is created: a retention with compaction
    /// makes the policy `compact,delete`.
    pub(crate) fn effective_settings(&self) -> Vec<(String, String)> {
        let mut settings = self.settings.clone();
        let has = |key: &str| self.settings.iter().any(|(k, _)| k == key);
        if has("retention.ms") {
            for (key, value) in &mut settings {
                if key == "cleanup.policy" && value == "compact" {
                    *value = "compact,delete".into();
                }
            }
        }
        settings
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty() {
            return Err("a declared topic has an empty name".into());
        }
        if self.partitions.is_some_and(|p| p < 1) {
            return Err(format!("topic '{name}': partitions must be at least 1"));
        }
        if self.replicas.is_some_and(|r| r < 1) {
            return Err(format!("topic '{name}': replicas must be at least 1"));
        }
        if let Some((key, _)) = self.settings.iter().find(|(k, _)| k.trim().is_empty()) {
            return Err(format!(
                "topic '{name}': a setting has an empty name ('{key}')"
            ));
        }
        Ok(())
    }
}

/// Which missing topics the worker creates at start on a real cluster (the embedded
/// broker starts empty, so there it creates them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreateTopics {
    /// The ones the app owns: agents' own topics (`{app_id}-{agent}`), repartition and
    /// `through` topics, changelogs, and the web directory and leader topics; and those
    /// declared with [`Topic::create`]. A missing source or sink topic stops the worker
    /// with an error naming it. The default.
    #[default]
    Internal,
    /// Every topic the app reads or writes (Faust's behaviour for topics named by string).
    All,
    /// None: every topic must exist.
    None,
}

impl CreateTopics {
    /// Parses `internal`, `all` or `none`.
    pub fn parse(text: &str) -> Result<CreateTopics, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "internal" => Ok(CreateTopics::Internal),
            "all" => Ok(CreateTopics::All),
            "none" => Ok(CreateTopics::None),
            _ => Err(format!(
                "'{text}' is not a topic creation policy: give internal (the app's own \
                 topics, the default), all, or none"
            )),
        }
    }

    /// What it creates, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            CreateTopics::Internal => "only the app's internal topics",
            CreateTopics::All => "every topic",
            CreateTopics::None => "none",
        }
    }

    /// Whether a missing topic is created: `internal` says whether the app owns it.
    pub(crate) fn creates(self, internal: bool) -> bool {
        match self {
            CreateTopics::Internal => internal,
            CreateTopics::All => true,
            CreateTopics::None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_with_compaction_is_compact_and_delete() {
        let topic = Topic::new("t")
            .compacting(true)
            .retention(Duration::from_secs(60));
        assert_eq!(
            topic.effective_settings(),
            vec![
                ("cleanup.policy".to_owned(), "compact,delete".to_owned()),
                ("retention.ms".to_owned(), "60000".to_owned()),
            ]
        );
        assert_eq!(
            Topic::new("t").compacting(true).effective_settings(),
            vec![("cleanup.policy".to_owned(), "compact".to_owned())]
        );
    }

    #[test]
    fn a_setting_given_twice_keeps_the_last() {
        let topic = Topic::new("t")
            .config("segment.ms", "1")
            .config("segment.ms", "2");
        assert_eq!(topic.settings, vec![("segment.ms".into(), "2".into())]);
    }

    #[test]
    fn invalid_declarations_are_refused() {
        assert!(Topic::new("t").partitions(0).validate().is_err());
        assert!(Topic::new("t").replicas(0).validate().is_err());
        assert!(Topic::new("").validate().is_err());
        assert!(Topic::new("t").partitions(3).validate().is_ok());
    }

    #[test]
    fn the_creation_policy_parses_and_decides() {
        assert_eq!(CreateTopics::parse("ALL"), Ok(CreateTopics::All));
        assert!(CreateTopics::parse("true")
            .unwrap_err()
            .contains("internal"));
        assert!(CreateTopics::Internal.creates(true));
        assert!(!CreateTopics::Internal.creates(false));
        assert!(CreateTopics::All.creates(false));
        assert!(!CreateTopics::None.creates(true));
    }
}
