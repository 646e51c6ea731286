//! The broker the worker talks to: a real Kafka-protocol cluster, or the embedded one
//! (librdkafka's in-process mock cluster) when none is configured; and the topics the
//! app needs on it.

use std::{
    collections::{HashMap, HashSet},
    sync::{mpsc, Arc},
    time::Duration,
};

use rdkafka::{
    admin::{
        AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
        TopicReplication,
    },
    mocking::MockCluster,
    producer::{BaseProducer, DefaultProducerContext, Producer as _},
    types::RDKafkaErrorCode,
    ClientConfig,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{
    connection::{Connection, Role},
    KafkaHealth, LogContext,
};
use crate::{config::Config, Error, Result};

/// How long a changelog's records are kept from compaction (`min.compaction.lag.ms`):
/// recovery leaves out a record of an event the group had not committed and applies the
/// key's previous record instead, which compaction must not have deleted yet. A day
/// covers a worker that crashed between its flush and its commit and stayed down.
pub(crate) const MIN_COMPACTION_LAG_MS: i64 = 24 * 3600 * 1000;

/// How long start-up waits for the broker to answer before saying it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic the app needs, and how it wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSpec {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    /// Whether the partition count is the app's to say (an internal or declared topic):
    /// an existing topic with another count is reported.
    pub(crate) partitions_declared: bool,
    /// Its replication factor; `None`: the app's.
    pub(crate) replicas: Option<i32>,
    /// Settings it is created with; an existing topic that disagrees is reported.
    pub(crate) settings: Vec<(String, String)>,
    /// The app owns it (or its declaration asks for it to be created).
    pub(crate) internal: bool,
    /// A table's changelog: its settings are what recovery relies on.
    pub(crate) changelog: bool,
    /// Who uses it, for messages ("read by agent 'split'").
    pub(crate) used_by: String,
}

impl TopicSpec {
    pub(crate) fn new(name: String, partitions: i32, used_by: &str) -> TopicSpec {
        TopicSpec {
            name,
            partitions,
            partitions_declared: false,
            replicas: None,
            settings: Vec::new(),
            internal: false,
            changelog: false,
            used_by: used_by.to_owned(),
        }
    }
}

/// The cluster a worker talks to, and how its clients are doing there. Clones share
/// the embedded broker, which lives until the last one is dropped.
#[derive(Clone)]
pub(crate) struct Broker {
    connection: Connection,
    /// The in-process broker, when no cluster is configured.
    embedded: Option<Arc<EmbeddedBroker>>,
    health: KafkaHealth,
}

impl Broker {
    /// Connects to the configured broker, or starts the embedded one.
    pub(crate) async fn connect(config: &Config) -> Result<Broker> {
        let (connection, embedded) = match config.bootstrap_servers() {
            Some(bootstrap) => (Connection::new(bootstrap, config, true), None),
            None => {
                let embedded = EmbeddedBroker::start().await?;
                info!(
                    bootstrap = %embedded.bootstrap,
                    "no broker configured: running on an embedded in-process broker (its data \
                     lives only as long as this worker; reach it from another shell with \
                     --broker kafka://{})",
                    embedded.bootstrap
                );
                if config.broker_tls.is_some() || config.broker_sasl.is_some() {
                    warn!(
                        "TLS or SASL settings are given but no broker (--broker): the \
                         embedded broker speaks plain text and ignores them"
                    );
                }
                let connection = Connection::new(embedded.bootstrap.clone(), config, false);
                (connection, Some(Arc::new(embedded)))
            }
        };
        Ok(Broker {
            connection,
            embedded,
            health: KafkaHealth::default(),
        })
    }

    /// How the worker's clients reach this broker.
    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// How the worker's clients of this broker are doing (they all report to it).
    pub(crate) fn health(&self) -> &KafkaHealth {
        &self.health
    }

    /// Makes sure every topic in `specs` exists, creating missing ones as `config` says
    /// (`create_topics`, `topic_replication_factor`) and reporting existing ones that
    /// disagree with their spec; returns the partition count of each. The embedded
    /// broker starts empty: there every topic is created.
    pub(crate) async fn ensure_topics(
        &self,
        specs: &[TopicSpec],
        config: &Config,
    ) -> Result<HashMap<String, i32>> {
        match &self.embedded {
            None => ensure_on_kafka(&self.connection, specs, config, &self.health).await,
            Some(embedded) => {
                for spec in specs {
                    embedded.create_topic(spec).await?;
                }
                Ok(specs
                    .iter()
                    .map(|s| (s.name.clone(), s.partitions))
                    .collect())
            }
        }
    }
}

async fn ensure_on_kafka(
    connection: &Connection,
    specs: &[TopicSpec],
    config: &Config,
    health: &KafkaHealth,
) -> Result<HashMap<String, i32>> {
    let bootstrap = connection.bootstrap();
    let admin: Arc<AdminClient<LogContext>> = Arc::new(
        connection
            .apply(Role::Admin, &mut ClientConfig::new())
            .create_with_context(LogContext(health.clone()))
            .map_err(|e| Error::kafka("creating the admin client", e))?,
    );
    let Cluster {
        topics: mut partitions,
        brokers,
    } = existing_topics(connection, health).await?;
    let (existing, missing): (Vec<&TopicSpec>, Vec<&TopicSpec>) =
        specs.iter().partition(|s| partitions.contains_key(&s.name));
    report_disagreements(&admin, &existing, &partitions).await;
    if missing.is_empty() {
        return Ok(partitions);
    }
    let refused: Vec<String> = (missing.iter())
        .filter(|s| !config.create_topics.creates(s.internal))
        .map(|s| format!("{} ({})", s.name, s.used_by))
        .collect();
    if !refused.is_empty() {
        return Err(Error::MissingTopics {
            topics: refused,
            creating: config.create_topics.describe(),
        });
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|s| {
            let asked = s.replicas.unwrap_or(config.topic_replication_factor);
            let replicas = TopicReplication::Fixed(replication_factor(asked, brokers));
            let topic = NewTopic::new(&s.name, s.partitions, replicas);
            (s.settings.iter()).fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(CONNECT_TIMEOUT));
    let results = tokio::time::timeout(
        CONNECT_TIMEOUT * 2,
        admin.create_topics(&new_topics, &options),
    )
    .await
    .map_err(|_| Error::Timeout {
        context: "creating topics".into(),
        broker: bootstrap.into(),
        timeout: CONNECT_TIMEOUT * 2,
    })?
    .map_err(|e| Error::kafka("creating topics", e))?;
    for result in results {
        match result {
            Ok(name) => info!(topic = %name, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::kafka(
                    format!("creating topic '{name}'"),
                    rdkafka::error::KafkaError::AdminOp(code),
                ))
            }
        }
    }
    partitions.extend(missing.iter().map(|s| (s.name.clone(), s.partitions)));
    Ok(partitions)
}

/// Warns about existing topics that disagree with what the app declares of them
/// (partitions, settings). They are used as they are: changing a topic is its owner's
/// decision.
async fn report_disagreements(
    admin: &AdminClient<LogContext>,
    existing: &[&TopicSpec],
    partitions: &HashMap<String, i32>,
) {
    for spec in existing {
        let actual = partitions
            .get(&spec.name)
            .copied()
            .unwrap_or(spec.partitions);
        if spec.partitions_declared && actual != spec.partitions && !spec.changelog {
            warn!(
                topic = %spec.name,
                partitions = actual,
                declared = spec.partitions,
                "this topic has {actual} partitions where the app declares {}: it is used as \
                 it is; to change it, recreate the topic, or declare what it has",
                spec.partitions
            );
        }
    }
    let with_settings: Vec<&TopicSpec> = (existing.iter().copied())
        .filter(|s| !s.settings.is_empty())
        .collect();
    let resources: Vec<ResourceSpecifier<'_>> = (with_settings.iter())
        .map(|s| ResourceSpecifier::Topic(&s.name))
        .collect();
    if resources.is_empty() {
        return;
    }
    let options = AdminOptions::new().request_timeout(Some(CONNECT_TIMEOUT));
    let described = match admin.describe_configs(&resources, &options).await {
        Ok(described) => described,
        Err(e) => {
            debug!(error = %e, "could not read the topics' settings");
            return;
        }
    };
    for resource in described.into_iter().flatten() {
        let OwnedResourceSpecifier::Topic(topic) = &resource.specifier else {
            continue;
        };
        let Some(spec) = with_settings.iter().find(|s| s.name == *topic) else {
            continue;
        };
        let actual = |key: &str| resource.get(key).and_then(|entry| entry.value.clone());
        for warning in disagreements(spec, actual) {
            warn!(topic = %spec.name, "{warning}");
        }
    }
}

/// How an existing topic's settings (`actual`) disagree with `spec`'s, one sentence each.
fn disagreements(spec: &TopicSpec, actual: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut found = Vec::new();
    // The lag is compaction's: without compaction it does not matter.
    let compacted = actual("cleanup.policy").is_some_and(|p| p.contains("compact"));
    for (key, wanted) in &spec.settings {
        let value = actual(key).unwrap_or_default();
        match key.as_str() {
            "cleanup.policy" if spec.changelog && !value.contains("compact") => {
                found.push(format!(
                    "this changelog is not compacted (cleanup.policy={value}): it keeps every \
                 write (recovery reads them all) or retention deletes keys the table still \
                 holds; set its cleanup.policy to {wanted}"
                ))
            }
            "cleanup.policy" if same_policy(&value, wanted) => {}
            "min.compaction.lag.ms" if !compacted => {}
            "min.compaction.lag.ms" => {
                let lag = value.parse::<i64>().unwrap_or(0);
                let least = wanted.parse::<i64>().unwrap_or(0);
                if lag < least {
                    found.push(format!(
                        "this changelog lets compaction delete a record as soon as a newer \
                         one of its key exists (min.compaction.lag.ms={lag}), which recovery \
                         after a crash may still need; set its min.compaction.lag.ms to \
                         {least} (one day) or more"
                    ));
                }
            }
            _ if value == *wanted => {}
            _ => found.push(format!(
                "this topic has {key}={value} where the app declares {key}={wanted}: it is \
                 used as it is; to change it, alter the topic's config (kafka-configs \
                 --alter --entity-type topics --entity-name {} --add-config \
                 {key}={wanted}), or declare what it has",
                spec.name
            )),
        }
    }
    found
}

/// Whether two `cleanup.policy` values name the same policies, in any order.
fn same_policy(a: &str, b: &str) -> bool {
    let set = |s: &str| -> std::collections::BTreeSet<String> {
        s.split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect()
    };
    set(a) == set(b)
}

/// What the start-up probe learned of the cluster.
struct Cluster {
    /// Every topic, with its partition count.
    topics: HashMap<String, i32>,
    /// How many brokers it has.
    brokers: usize,
}

/// The replication factor for new topics: the one asked for, but no more than the
/// cluster has brokers (Kafka would refuse the topic).
fn replication_factor(asked: i32, brokers: usize) -> i32 {
    let brokers = i32::try_from(brokers).unwrap_or(i32::MAX).max(1);
    if asked > brokers {
        warn!(
            replication_factor = asked,
            brokers,
            "the topic replication factor is more than the cluster has brokers: creating \
             topics with {brokers} replicas"
        );
        return brokers;
    }
    if asked == 1 && brokers >= 3 {
        info!(
            brokers,
            "creating topics with replication factor 1: one broker's loss loses their data \
             (table changelogs too); set --topic-replication-factor (Faust's \
             topic_replication_factor) to 3 for production"
        );
    }
    asked
}

/// Names of the topics the broker knows, or a clear error when it does not answer or
/// turns the worker away. Asked in short rounds by a probe whose callbacks are served
/// between them (the admin client's never are: rdkafka polls only its admin queue), so
/// an authentication or TLS failure ends the wait at once.
async fn existing_topics(connection: &Connection, health: &KafkaHealth) -> Result<Cluster> {
    const ROUND: Duration = Duration::from_millis(500);
    let bootstrap = connection.bootstrap();
    let probe: Arc<BaseProducer<LogContext>> = Arc::new(
        connection
            .apply(Role::Producer, &mut ClientConfig::new())
            .create_with_context(LogContext(health.clone()))
            .map_err(|e| Error::kafka("creating the connection probe", e))?,
    );
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let metadata = loop {
        let client = probe.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            let metadata = client.client().fetch_metadata(None, ROUND);
            client.poll(Duration::ZERO);
            metadata
        })
        .await
        .map_err(|e| Error::Worker(format!("the metadata request was interrupted: {e}")))?;
        if let Some(refusal) = health.refusal() {
            return Err(Error::Refused {
                broker: bootstrap.into(),
                fix: refusal.fix().into(),
                reason: refusal.reason,
            });
        }
        let retry = matches!(metadata, Err(rdkafka::error::KafkaError::MetadataFetch(_)));
        if !retry || tokio::time::Instant::now() >= deadline {
            break metadata;
        }
    };
    match metadata {
        Ok(metadata) => Ok(Cluster {
            topics: metadata
                .topics()
                .iter()
                .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
                .collect(),
            brokers: metadata.brokers().len(),
        }),
        Err(rdkafka::error::KafkaError::MetadataFetch(code)) if accepts_connections(bootstrap).await => {
            Err(Error::Refused {
                broker: bootstrap.into(),
                reason: format!(
                    "it accepts connections but answered nothing within {CONNECT_TIMEOUT:?} ({code})"
                ),
                fix: "a broker that requires TLS or SASL closes a connection that does not \
                      offer them: give --broker-tls or --broker-ca (FAUST_BROKER_CA), and \
                      --broker-sasl with --broker-username (FAUST_BROKER_USERNAME)"
                    .into(),
            })
        }
        Err(rdkafka::error::KafkaError::MetadataFetch(code)) => Err(Error::Unreachable {
            broker: bootstrap.into(),
            reason: format!("no metadata within {CONNECT_TIMEOUT:?}: {code}"),
        }),
        Err(e) => Err(Error::kafka(
            format!("fetching metadata from {bootstrap}"),
            e,
        )),
    }
}

/// Whether some address of `bootstrap` (`host:port,...`) accepts a TCP connection: then
/// a broker that does not answer is there but turning the worker away.
async fn accepts_connections(bootstrap: &str) -> bool {
    for address in bootstrap.split(',') {
        let connect = tokio::net::TcpStream::connect(address.trim());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            return true;
        }
    }
    false
}

/// librdkafka's mock cluster on a thread of its own (it cannot move between threads).
pub(crate) struct EmbeddedBroker {
    bootstrap: String,
    requests: mpsc::Sender<(TopicSpec, oneshot::Sender<Result<()>>)>,
}

impl EmbeddedBroker {
    async fn start() -> Result<EmbeddedBroker> {
        let (requests, inbox) = mpsc::channel::<(TopicSpec, oneshot::Sender<Result<()>>)>();
        let (ready, started) = oneshot::channel();
        std::thread::Builder::new()
            .name("faust-embedded-broker".into())
            .spawn(move || {
                let cluster: MockCluster<'static, DefaultProducerContext> =
                    match MockCluster::new(1) {
                        Ok(cluster) => cluster,
                        Err(e) => {
                            let _ =
                                ready.send(Err(Error::kafka("starting the embedded broker", e)));
                            return;
                        }
                    };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                let mut created = HashSet::new();
                // Lives until the worker drops its `EmbeddedBroker` (the sender).
                for (spec, reply) in inbox {
                    let result = if created.contains(&spec.name) {
                        Ok(())
                    } else {
                        cluster
                            .create_topic(&spec.name, spec.partitions, 1)
                            .map(|()| {
                                created.insert(spec.name.clone());
                            })
                            .map_err(|e| Error::kafka(format!("creating topic '{}'", spec.name), e))
                    };
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| Error::Io {
                context: "starting the embedded broker thread".into(),
                source: e,
            })?;
        let bootstrap = started
            .await
            .map_err(|_| Error::Worker("the embedded broker thread ended at start".into()))??;
        Ok(EmbeddedBroker {
            bootstrap,
            requests,
        })
    }

    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let gone = || Error::Worker("the embedded broker has stopped".into());
        self.requests
            .send((spec.clone(), reply))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changelog() -> TopicSpec {
        let mut spec = TopicSpec::new("c".into(), 4, "the changelog of table 't'");
        spec.changelog = true;
        spec.settings = vec![
            ("cleanup.policy".into(), "compact,delete".into()),
            ("retention.ms".into(), "1000".into()),
            (
                "min.compaction.lag.ms".into(),
                MIN_COMPACTION_LAG_MS.to_string(),
            ),
        ];
        spec
    }

    fn described<'a>(settings: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |key| {
            let mut settings = settings.iter();
            settings
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_topic_as_declared_has_no_disagreement() {
        let lag = MIN_COMPACTION_LAG_MS.to_string();
        let topic = [
            ("cleanup.policy", "delete,compact"),
            ("retention.ms", "1000"),
            ("min.compaction.lag.ms", lag.as_str()),
        ];
        assert_eq!(
            disagreements(&changelog(), described(&topic)),
            Vec::<String>::new()
        );
        // A longer lag than needed is fine.
        let topic = [
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "1000"),
            ("min.compaction.lag.ms", "999999999999"),
        ];
        assert!(disagreements(&changelog(), described(&topic)).is_empty());
    }

    #[test]
    fn each_disagreement_is_named_with_what_to_set() {
        let topic = [("cleanup.policy", "compact,delete"), ("retention.ms", "5")];
        let found = disagreements(&changelog(), described(&topic));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("retention.ms=5 where the app declares retention.ms=1000"));
        assert!(found[1].contains("min.compaction.lag.ms to 86400000"));
        // Not compacted: that is what to fix (the lag is compaction's).
        let topic = [("cleanup.policy", "delete"), ("retention.ms", "1000")];
        let found = disagreements(&changelog(), described(&topic));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("not compacted (cleanup.policy=delete)"));
        assert!(found[0].contains("set its cleanup.policy to compact,delete"));
        // A compacted changelog without the deletion its windows need is named too.
        let topic = [("cleanup.policy", "compact"), ("retention.ms", "1000")];
        let found = disagreements(&changelog(), described(&topic));
        assert!(
            found[0].contains(
                "cleanup.policy=compact where the app declares cleanup.policy=compact,delete"
            ),
            "{found:#?}"
        );
    }
}
