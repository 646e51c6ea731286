//! The App: the configuration and the registry, and what follows from them (which
//! topics exist, which agent reads which topic). The [`crate::worker::Worker`] runs it.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use crate::{
    config::{
        BrokerSpec, ClientSetting, Config, CreateTopics, OffsetReset, RestartLimit, Sasl, Tls,
        Topic, WebTls,
    },
    descriptor::topic_name,
    registry::Registry,
    sensors::Sensor,
    service::{Hooks, Service},
    transport::broker::{TopicSpec, MIN_COMPACTION_LAG_MS},
    Error, Result,
};

/// An app: configuration plus the agents, tables, tasks and commands registered in this
/// binary. Usually built by `faust::main!`, which also applies `FAUST_*` and CLI settings.
#[derive(Clone)]
pub struct App {
    config: Config,
    registry: Registry,
    sensors: Vec<Arc<dyn Sensor>>,
    services: Vec<Arc<dyn Hooks>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .field("sensors", &self.sensors.len())
            .field("services", &self.services.len())
            .finish()
    }
}

impl App {
    /// Starts configuring an app with the given id (consumer group and topic prefix).
    pub fn builder(id: impl Into<String>) -> AppBuilder {
        AppBuilder {
            config: Config::new(id),
            errors: Vec::new(),
            sensors: Vec::new(),
            services: Vec::new(),
        }
    }

    /// An app from a validated configuration and an explicit registry.
    pub(crate) fn new(config: Config, registry: Registry) -> Result<App> {
        config.validate()?;
        Ok(App {
            config,
            registry,
            sensors: Vec::new(),
            services: Vec::new(),
        })
    }

    /// Adds a sensor that observes the worker, next to the built-in Monitor.
    pub(crate) fn with_sensor(mut self, sensor: Arc<dyn Sensor>) -> App {
        self.sensors.push(sensor);
        self
    }

    /// Adds a service the worker starts and stops with itself.
    pub(crate) fn with_service(mut self, service: Arc<dyn Hooks>) -> App {
        self.services.push(service);
        self
    }

    /// The user's sensors.
    pub(crate) fn sensors(&self) -> &[Arc<dyn Sensor>] {
        &self.sensors
    }

    /// The user's services, in the order given.
    pub(crate) fn services(&self) -> &[Arc<dyn Hooks>] {
        &self.services
    }

    /// Its settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The topics the agents read (sources, repartition and `through` topics), sorted,
    /// each once.
    pub(crate) fn source_topics(&self) -> Vec<String> {
        let id = &self.config.id;
        let mut names: Vec<String> = (self.registry.agents.iter())
            .flat_map(|a| a.source_topics(id))
            .filter(|topic| !self.config.channels.contains(topic))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Topics the app reads and writes, each once: every agent's sources and sinks, every
    /// table's changelog, the web directory and the leader topic, and those declared in
    /// code, with what the declarations say.
    pub(crate) fn topics(&self) -> Vec<TopicSpec> {
        let config = &self.config;
        let id = &config.id;
        let mut specs = TopicSpecs {
            specs: Vec::new(),
            partitions: config.topic_partitions,
        };
        let agents = self.agent_targets();
        for agent in &self.registry.agents {
            let used_by = format!("read by agent '{}'", agent.name);
            if agent.topics.is_empty() {
                specs.internal(format!("{id}-{}", agent.name), &used_by);
            }
            for topic in agent.topics {
                specs.external(topic_name(topic, id), &used_by);
            }
            for name in agent.group_by {
                specs.internal(agent.repartition_topic(id, name), &used_by);
            }
            for through in agent.through {
                specs.internal(topic_name(through, id), &used_by);
            }
            let written_by = format!("written by agent '{}'", agent.name);
            // A sink naming an agent writes that agent's topic, declared above.
            for sink in agent.sink_topics(id) {
                if !agents.contains_key(&sink) {
                    specs.external(sink, &written_by);
                }
            }
        }
        if let Some(topic) = &config.dead_letter_topic {
            specs.external(topic.clone(), "the dead-letter topic");
        }
        for table in &self.registry.tables {
            let changelog = specs.internal(
                table.changelog_topic(id),
                &format!("the changelog of table '{}'", table.name),
            );
            changelog.partitions = table.partitions_or(config.topic_partitions);
            changelog.changelog = true;
            let lag = MIN_COMPACTION_LAG_MS.to_string();
            changelog.settings = match &table.window {
                // Windows expire: their keys are deleted with the window's retention.
                Some(window) => vec![
                    ("cleanup.policy".into(), "compact,delete".into()),
                    ("retention.ms".into(), window.retention_ms().to_string()),
                    ("min.compaction.lag.ms".into(), lag),
                ],
                None => vec![
                    ("cleanup.policy".into(), "compact".into()),
                    ("min.compaction.lag.ms".into(), lag),
                ],
            };
        }
        if config.web_enabled {
            let directory = crate::web::directory_topic(id);
            let directory = specs.internal(directory, "the web directory");
            directory.partitions = 1;
            directory.settings = vec![("cleanup.policy".into(), "compact".into())];
        }
        specs
            .internal(crate::leader::topic(id), "the leader election")
            .partitions = 1;
        for declared in &config.topics {
            specs.declare(topic_name(&declared.name, id), declared);
        }
        let mut specs = specs.specs;
        specs.retain(|spec| !config.channels.contains(&spec.name));
        specs
    }

    /// Refuses to start when a table and a topic that feeds the app disagree on partitions.
    pub(crate) fn check_copartitioning(
        &self,
        partition_counts: &HashMap<String, i32>,
    ) -> Result<()> {
        for &table in &self.registry.tables {
            let partitions = table.partitions_or(self.config.topic_partitions);
            if table.global {
                continue; // every worker holds every partition: nothing to line up
            }
            let changelog = table.changelog_topic(&self.config.id);
            if let Some(&actual) = partition_counts.get(&changelog) {
                if actual != partitions {
                    return Err(Error::Config(format!(
                    "table '{}' is declared with {partitions} partitions but its changelog '{changelog}' \
                     has {actual}; declare the table with partitions = {actual}, or recreate the changelog",
                    table.name
                )));
                }
            }
            for agent in &self.registry.agents {
                for topic in agent.source_topics(&self.config.id) {
                    match partition_counts.get(&topic) {
                    Some(&actual) if actual != partitions => {
                        return Err(Error::Config(format!(
                            "table '{}' has {partitions} partitions but topic '{topic}' (read by agent \
                             '{}') has {actual}; tables are partitioned like the topics that feed them, \
                             so give both the same count (table `partitions = ...`, or repartition the topic)",
                            table.name, agent.name
                        )))
                    }
                    _ => {}
                }
                }
            }
        }
        Ok(())
    }

    /// Agent name -> the topic `send` writes to when given that name.
    pub(crate) fn agent_targets(&self) -> HashMap<String, Arc<str>> {
        self.registry
            .agents
            .iter()
            .filter_map(|a| {
                let topic = a.source_topics(&self.config.id).into_iter().next()?;
                Some((a.name.to_owned(), Arc::from(topic)))
            })
            .collect()
    }
}

/// The app `faust::main!` configures, registered so the test context tests the app with
/// the id and settings its worker runs with.
#[doc(hidden)]
pub struct MainApp(pub fn() -> AppBuilder);

inventory::collect!(MainApp);

impl MainApp {
    /// The app of this binary's `faust::main!`, if it has one.
    #[cfg(feature = "testing")]
    pub(crate) fn builder() -> Option<AppBuilder> {
        inventory::iter::<MainApp>().next().map(|main| (main.0)())
    }
}

/// What an [`AppBuilder`] was given.
pub(crate) struct Parts {
    pub(crate) config: Config,
    pub(crate) sensors: Vec<Arc<dyn Sensor>>,
    pub(crate) services: Vec<Arc<dyn Hooks>>,
}

/// Settings given in code; `FAUST_*` variables and CLI flags override them.
#[derive(Clone)]
pub struct AppBuilder {
    config: Config,
    errors: Vec<String>,
    sensors: Vec<Arc<dyn Sensor>>,
    services: Vec<Arc<dyn Hooks>>,
}

impl AppBuilder {
    /// The consumer group, when it is not the app id (to take over from a Python Faust
    /// app: see `copy-offsets` in the README).
    pub fn group_id(mut self, group: &str) -> Self {
        self.config.group_id = Some(group.to_owned());
        self
    }

    /// `kafka://host:port[,...]`; without it the worker runs on an embedded broker.
    pub fn broker(mut self, url: &str) -> Self {
        match BrokerSpec::parse(url) {
            Ok(spec) => self.config.broker = spec,
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Connects to the brokers over TLS: `.broker_tls(faust::Tls::ca_file("ca.pem"))`.
    pub fn broker_tls(mut self, tls: Tls) -> Self {
        self.config.broker_tls = Some(tls);
        self
    }

    /// Authenticates to the brokers with SASL:
    /// `.broker_sasl(faust::Sasl::scram_sha_512("user", password))`.
    pub fn broker_sasl(mut self, sasl: Sasl) -> Self {
        self.config.broker_sasl = Some(sasl);
        self
    }

    /// Passes a librdkafka property to the worker's Kafka clients:
    /// `.kafka("producer.compression.type=lz4")` (see [`ClientSetting::parse`]).
    pub fn kafka(mut self, setting: &str) -> Self {
        match ClientSetting::parse(setting) {
            Ok(setting) => self.config.kafka_settings.push(setting),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Where local state (table stores) lives; defaults to `{id}-data`.
    pub fn datadir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.datadir = dir.into();
        self
    }

    /// Partitions of the topics the app creates.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.config.topic_partitions = partitions;
        self
    }

    /// Replicas of each topic the app creates (default 1, as in Faust; at most the
    /// cluster's broker count).
    pub fn topic_replication_factor(mut self, replicas: i32) -> Self {
        self.config.topic_replication_factor = replicas;
        self
    }

    /// Where to start in a partition with no committed offset (default earliest).
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.config.auto_offset_reset = reset;
        self
    }

    /// Commit acknowledged offsets at least this often (default 1 s).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.config.commit_interval = interval;
        self
    }

    /// Commit whenever this many events were acknowledged since the last commit (default 10,000).
    pub fn commit_every(mut self, events: u64) -> Self {
        self.config.commit_every = events;
        self
    }

    /// Port of the worker's web server (default 6066; 0 picks a free one).
    pub fn web_port(mut self, port: u16) -> Self {
        self.config.web_port = port;
        self
    }

    /// Address the web server listens on (default 0.0.0.0).
    pub fn web_bind(mut self, address: &str) -> Self {
        self.config.web_bind = address.to_owned();
        self
    }

    /// Host name this worker's web server is reached by (default: the machine's name).
    pub fn web_host(mut self, host: &str) -> Self {
        self.config.web_host = host.to_owned();
        self
    }

    /// Serves this table's values at `/tables/{table}/{key}`, like `web = true` on it.
    pub fn web_table(mut self, table: &str) -> Self {
        self.config.web_tables.push(table.to_owned());
        self
    }

    /// Requires `Authorization: Bearer {token}` for everything the web server serves
    /// but `/health` and `/metrics`.
    pub fn web_token(mut self, token: impl Into<String>) -> Self {
        self.config.web_token = Some(crate::config::Secret::new(token));
        self
    }

    /// Serves the web port over TLS, and with [`WebTls::client_ca`] requires client
    /// certificates for all but `/health` and `/metrics`.
    pub fn web_tls(mut self, tls: WebTls) -> Self {
        self.config.web_tls = Some(tls);
        self
    }

    /// Runs the worker with (true, the default) or without its web server.
    pub fn web_enabled(mut self, enabled: bool) -> Self {
        self.config.web_enabled = enabled;
        self
    }

    /// Which missing topics the worker creates: the app's internal ones (the default),
    /// all it reads and writes, or none.
    pub fn create_topics(mut self, create: CreateTopics) -> Self {
        self.config.create_topics = create;
        self
    }

    /// Declares a topic: its partitions, replicas and settings, and whether the worker
    /// creates it (`topic = faust::Topic::new("posts").partitions(12)` in `faust::main!`).
    /// Declaring a topic again replaces the earlier declaration.
    pub fn topic(mut self, topic: Topic) -> Self {
        self.config.topics.retain(|t| t.name != topic.name);
        self.config.topics.push(topic);
        self
    }

    /// Declares an in-memory channel (Python Faust's `app.channel()`): an agent reads it
    /// with `topic = "name"`, and `faust::send("name", ..)` and sinks naming it hand
    /// their values to its agents inside the worker, with no broker in between
    /// (`channel = "name"` in `faust::main!`; call it again for more). A value sent
    /// while an event is processed holds that event's acknowledgement until the
    /// channel's agents are done with it, so a crash loses nothing; a value sent from a
    /// timer, task or page is lost if the worker stops before it is processed.
    pub fn channel(mut self, name: &str) -> Self {
        if !self.config.channels.iter().any(|c| c == name) {
            self.config.channels.push(name.to_owned());
        }
        self
    }

    /// Pause a partition with this many events in flight until half are acknowledged (default 10,000).
    pub fn max_buffered_per_partition(mut self, events: usize) -> Self {
        self.config.max_buffered_per_partition = events;
        self
    }

    /// How long a revocation waits for the events actors already started (default 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// How long an ask waits for its reply, and a `join` or `map` for each next
    /// one, before failing with [`Error::NoReply`](crate::Error::NoReply) (default 60 s).
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.config.reply_timeout = timeout;
        self
    }

    /// The topic this worker's asks get their replies on (default: `f-reply-{uuid}`,
    /// new for each run, as in Faust).
    pub fn reply_to(mut self, topic: &str) -> Self {
        self.config.reply_to = Some(topic.to_owned());
        self
    }

    /// How long replies stay in the reply topic (default one day, as in Faust).
    pub fn reply_expires(mut self, expires: Duration) -> Self {
        self.config.reply_expires = expires;
        self
    }

    /// Warn about a partition whose committed offset has not moved for this long while
    /// it has messages waiting (default 60 s).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.stall_timeout = timeout;
        self
    }

    /// Whether agents stamp what they send with its origin and skip records they
    /// applied already (default true; README, "Processing guarantees"). Off, a table fed
    /// through an internal topic is at-least-once after a crash.
    pub fn origin_headers(mut self, on: bool) -> Self {
        self.config.origin_headers = on;
        self
    }

    /// On how many other workers each table partition is kept warm, following its
    /// changelog (default 0; Faust's `table_standby_replicas`): a partition that moves
    /// to one of them replays only the tail of its changelog (README, "Standby replicas").
    pub fn standby_replicas(mut self, replicas: usize) -> Self {
        self.config.standby_replicas = replicas;
        self
    }

    /// Copy messages agents cannot decode to this topic before skipping them.
    pub fn dead_letter_topic(mut self, topic: &str) -> Self {
        self.config.dead_letter_topic = Some(topic.to_owned());
        self
    }

    /// The consumer-group session timeout: how soon a silent worker's partitions move (default 10 s).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.config.session_timeout = timeout;
        self
    }

    /// How long the producer keeps retrying a message through a broker outage before
    /// its delivery fails (default 20 minutes, as in Faust).
    pub fn producer_request_timeout(mut self, timeout: Duration) -> Self {
        self.config.producer_request_timeout = timeout;
        self
    }

    /// Stop the worker when an agent's actor fails more than `failures` times within `within` (default 10 in 10 s).
    pub fn restart_limit(mut self, failures: usize, within: Duration) -> Self {
        self.config.restart_limit = RestartLimit { failures, within };
        self
    }

    /// Adds a sensor: its hooks see what the worker does, next to the built-in Monitor
    /// (`faust::main!(id = "app", sensor = MySensor::default())`).
    pub fn sensor(mut self, sensor: impl Sensor) -> Self {
        self.sensors.push(Arc::new(sensor));
        self
    }

    /// The configuration so far, or the first invalid setting.
    pub fn config(self) -> Result<Config> {
        Ok(self.into_parts()?.config)
    }

    /// Adds a service the worker starts and stops with itself (Faust's `app.service`;
    /// `faust::main!(id = "app", service = MyService)`). Services start in the order
    /// given and stop in the reverse order.
    pub fn service(mut self, service: impl Service) -> Self {
        self.services.push(Arc::new(service));
        self
    }

    /// The configuration, the sensors and the services, or the first invalid setting.
    pub(crate) fn into_parts(self) -> Result<Parts> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(crate::Error::Config(e));
        }
        Ok(Parts {
            config: self.config,
            sensors: self.sensors,
            services: self.services,
        })
    }

    /// Builds the app from these settings and the registry collected from this binary
    /// (`build_from_env`, which also reads the `FAUST_*` variables, is in cli.rs).
    pub fn build(self) -> Result<App> {
        let Parts {
            config,
            sensors,
            services,
        } = self.into_parts()?;
        let mut app = App::new(config, Registry::collect()?)?;
        app.sensors = sensors;
        app.services = services;
        Ok(app)
    }
}

/// The topics of an app as [`App::topics`] collects them, each once, in order of
/// first mention.
struct TopicSpecs {
    specs: Vec<TopicSpec>,
    /// The app's default partition count.
    partitions: i32,
}

impl TopicSpecs {
    fn entry(&mut self, name: String, used_by: &str) -> &mut TopicSpec {
        let index = match self.specs.iter().position(|s| s.name == name) {
            Some(index) => index,
            None => {
                let spec = TopicSpec::new(name, self.partitions, used_by);
                self.specs.push(spec);
                self.specs.len() - 1
            }
        };
        &mut self.specs[index]
    }

    /// A topic the app owns: created when missing, its partitions the app's.
    fn internal(&mut self, name: String, used_by: &str) -> &mut TopicSpec {
        let spec = self.entry(name, used_by);
        spec.internal = true;
        spec.partitions_declared = true;
        spec
    }

    /// A topic others own too (a source, a sink): created only when asked.
    fn external(&mut self, name: String, used_by: &str) {
        self.entry(name, used_by);
    }

    /// What code declares about a topic, over what the app knows of it.
    fn declare(&mut self, name: String, declared: &Topic) {
        let spec = self.entry(name, "declared in code");
        spec.internal |= declared.create;
        if let Some(partitions) = declared.partitions {
            spec.partitions = partitions;
            spec.partitions_declared = true;
        }
        spec.replicas = declared.replicas.or(spec.replicas);
        for (key, value) in declared.effective_settings() {
            spec.settings.retain(|(k, _)| *k != key);
            spec.settings.push((key, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        agents::{AgentDescriptor, OnError},
        codec::KeyCodec,
        descriptor::TableDescriptor,
    };

    static SPLIT: AgentDescriptor = AgentDescriptor {
        name: "split",
        topics: &["posts"],
        sinks: &["{app_id}-lines"],
        group_by: &["word"],
        through: &[],
        concurrency: 1,
        isolated_partitions: false,
        on_error: OnError::Skip,
        retries: 0,
        codec: "json",
        key_codec: KeyCodec::Raw,
        value_type: "String",
        location: "app.rs:1",
        run: |_| Box::pin(async { Ok(()) }),
    };

    static COUNT: AgentDescriptor = AgentDescriptor {
        name: "count",
        topics: &[],
        ..SPLIT
    };

    static COUNTS: TableDescriptor = TableDescriptor {
        name: "counts",
        partitions: Some(2),
        ..crate::descriptor::INVALID_TABLE
    };

    fn topics(builder: AppBuilder) -> Vec<TopicSpec> {
        let config = builder.config().unwrap();
        let registry =
            Registry::from_parts(vec![&SPLIT, &COUNT], vec![&COUNTS], vec![], vec![], vec![]);
        App::new(config, registry.unwrap()).unwrap().topics()
    }

    fn find<'a>(specs: &'a [TopicSpec], name: &str) -> &'a TopicSpec {
        let found = specs.iter().find(|s| s.name == name);
        found.unwrap_or_else(|| panic!("no topic {name} in {specs:#?}"))
    }

    #[test]
    fn sources_and_sinks_are_external_and_what_the_app_names_is_internal() {
        let specs = topics(App::builder("wc").partitions(4));
        let posts = find(&specs, "posts");
        assert!(!posts.internal);
        assert_eq!(posts.used_by, "read by agent 'split'");
        assert!(!find(&specs, "wc-lines").internal, "a sink");
        for internal in [
            "wc-count",
            "wc-split-word-repartition",
            "wc-counts-changelog",
        ] {
            assert!(find(&specs, internal).internal, "{internal}");
        }
        let changelog = find(&specs, "wc-counts-changelog");
        assert_eq!(changelog.partitions, 2, "the table's own count");
        assert!(changelog.changelog);
        assert!(changelog
            .settings
            .contains(&("cleanup.policy".into(), "compact".into())));
        assert_eq!(find(&specs, "wc-count").partitions, 4);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "each once: {names:?}");
    }

    #[test]
    fn a_declaration_sets_partitions_replicas_settings_and_creation() {
        let posts = crate::Topic::new("posts")
            .partitions(12)
            .replicas(3)
            .retention(Duration::from_secs(3600))
            .create(true);
        let changelog =
            crate::Topic::new("{app_id}-counts-changelog").config("segment.ms", "60000");
        let specs = topics(App::builder("wc").topic(posts).topic(changelog));
        let posts = find(&specs, "posts");
        assert!(posts.internal && posts.partitions_declared);
        assert_eq!((posts.partitions, posts.replicas), (12, Some(3)));
        assert_eq!(
            posts.settings,
            vec![("retention.ms".into(), "3600000".into())]
        );
        assert_eq!(posts.used_by, "read by agent 'split'");
        let changelog = find(&specs, "wc-counts-changelog");
        assert!(changelog
            .settings
            .contains(&("segment.ms".into(), "60000".into())));
        assert!(
            changelog
                .settings
                .contains(&("cleanup.policy".into(), "compact".into())),
            "added to the changelog's own settings"
        );
        // A declared topic no agent uses is still the app's to check or create.
        let specs = topics(App::builder("wc").topic(crate::Topic::new("greetings")));
        assert_eq!(find(&specs, "greetings").used_by, "declared in code");
    }
}
