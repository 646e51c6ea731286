//! The App: the configuration and the registry, and what follows from them (which
//! topics exist, which agent reads which topic). The [`crate::worker::Worker`] runs it.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use crate::{
    agents::RestartLimit,
    config::{BrokerSpec, Config, OffsetReset},
    registry::Registry,
    transport::broker::TopicSpec,
    Result,
};

/// An app: configuration plus the agents, tables, tasks and commands registered in this
/// binary. Usually built by `faust::main!`, which also applies `FAUST_*` and CLI settings.
#[derive(Debug, Clone)]
pub struct App {
    config: Config,
    registry: Registry,
}

impl App {
    /// Starts configuring an app with the given id (consumer group and topic prefix).
    pub fn builder(id: impl Into<String>) -> AppBuilder {
        AppBuilder {
            config: Config::new(id),
            errors: Vec::new(),
        }
    }

    /// An app from a validated configuration and an explicit registry.
    pub fn new(config: Config, registry: Registry) -> Result<App> {
        config.validate()?;
        Ok(App { config, registry })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Topics the app reads and writes: every agent's sources and sinks, and every
    /// table's compacted changelog.
    pub(crate) fn topics(&self) -> Vec<TopicSpec> {
        let mut names: Vec<String> = self
            .registry
            .agents
            .iter()
            .flat_map(|a| {
                let mut topics = a.source_topics(&self.config.id);
                topics.extend(a.sinks.iter().map(|s| s.to_string()));
                topics
            })
            .collect();
        names.sort();
        names.dedup();
        let streams = names.into_iter().map(|name| TopicSpec {
            name,
            partitions: self.config.topic_partitions,
            compacted: false,
        });
        let changelogs = self.registry.tables.iter().map(|t| TopicSpec {
            name: t.changelog_topic(&self.config.id),
            partitions: t.partitions.unwrap_or(self.config.topic_partitions),
            compacted: true,
        });
        streams.chain(changelogs).collect()
    }

    /// Agent name -> the topic `send` writes to when given that name.
    pub(crate) fn agent_targets(&self) -> HashMap<String, String> {
        self.registry
            .agents
            .iter()
            .filter_map(|a| {
                let topic = a.source_topics(&self.config.id).into_iter().next()?;
                Some((a.name.to_owned(), topic))
            })
            .collect()
    }
}

/// Settings given in code; `FAUST_*` variables and CLI flags override them.
#[derive(Debug, Clone)]
pub struct AppBuilder {
    config: Config,
    errors: Vec<String>,
}

impl AppBuilder {
    /// `kafka://host:port[,...]`; without it the worker runs on an embedded broker.
    pub fn broker(mut self, url: &str) -> Self {
        match BrokerSpec::parse(url) {
            Ok(spec) => self.config.broker = spec,
            Err(e) => self.errors.push(e),
        }
        self
    }

    pub fn datadir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.datadir = dir.into();
        self
    }

    /// Partitions of the topics the app creates.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.config.topic_partitions = partitions;
        self
    }

    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.config.auto_offset_reset = reset;
        self
    }

    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.config.commit_interval = interval;
        self
    }

    pub fn commit_every(mut self, events: u64) -> Self {
        self.config.commit_every = events;
        self
    }

    pub fn web_port(mut self, port: u16) -> Self {
        self.config.web_port = port;
        self
    }

    pub fn create_topics(mut self, create: bool) -> Self {
        self.config.create_topics = create;
        self
    }

    pub fn max_buffered_per_partition(mut self, events: usize) -> Self {
        self.config.max_buffered_per_partition = events;
        self
    }

    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.config.session_timeout = timeout;
        self
    }

    pub fn restart_limit(mut self, failures: usize, within: Duration) -> Self {
        self.config.restart_limit = RestartLimit { failures, within };
        self
    }

    /// The configuration so far, or the first invalid setting.
    pub fn config(self) -> Result<Config> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(crate::Error::Config(e));
        }
        Ok(self.config)
    }

    /// Builds the app from these settings and the registry collected from this binary.
    pub fn build(self) -> Result<App> {
        App::new(self.config()?, Registry::collect()?)
    }
}
