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

/// A topic the app needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSpec {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    pub(crate) compacted: bool,
    /// For a compacted topic, also delete records older than this (`compact,delete`):
    /// windowed tables' changelogs, whose keys expire.
    pub(crate) retention_ms: Option<i64>,
}

/// The cluster a worker talks to, and how its clients are doing there.
pub(crate) struct Broker {
    connection: Connection,
    /// The in-process broker, when no cluster is configured.
    embedded: Option<EmbeddedBroker>,
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
                (connection, Some(embedded))
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
    /// (`create_topics`, `topic_replication_factor`); returns the partition count of each.
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
    check_changelogs(&admin, &existing).await;
    if missing.is_empty() {
        return Ok(partitions);
    }
    if !config.create_topics {
        return Err(Error::MissingTopics {
            topics: missing.iter().map(|s| s.name.clone()).collect(),
        });
    }
    let replication = replication_factor(config.topic_replication_factor, brokers);
    let retentions: Vec<Option<String>> = missing
        .iter()
        .map(|s| s.retention_ms.map(|ms| ms.to_string()))
        .collect();
    let lag = MIN_COMPACTION_LAG_MS.to_string();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&retentions)
        .map(|(s, retention)| {
            let topic = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(replication));
            let topic = match s.compacted {
                true => topic.set("min.compaction.lag.ms", &lag),
                false => topic,
            };
            match (s.compacted, retention) {
                (true, Some(ms)) => topic
                    .set("cleanup.policy", "compact,delete")
                    .set("retention.ms", ms),
                (true, None) => topic.set("cleanup.policy", "compact"),
                (false, _) => topic,
            }
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

/// Warns about existing changelogs that are not compacted (they grow without end, or
/// lose keys to retention), or whose records compaction may delete too early for
/// recovery (see [`MIN_COMPACTION_LAG_MS`]); topics created here get both right.
async fn check_changelogs(admin: &AdminClient<LogContext>, existing: &[&TopicSpec]) {
    let resources: Vec<ResourceSpecifier<'_>> = existing
        .iter()
        .filter(|s| s.compacted)
        .map(|s| ResourceSpecifier::Topic(&s.name))
        .collect();
    if resources.is_empty() {
        return;
    }
    let options = AdminOptions::new().request_timeout(Some(CONNECT_TIMEOUT));
    let described = match admin.describe_configs(&resources, &options).await {
        Ok(described) => described,
        Err(e) => {
            debug!(error = %e, "could not read the changelogs' settings");
            return;
        }
    };
    for resource in described.into_iter().flatten() {
        let topic = match &resource.specifier {
            OwnedResourceSpecifier::Topic(topic) => topic.as_str(),
            _ => "?",
        };
        let policy = resource
            .get("cleanup.policy")
            .and_then(|entry| entry.value.clone())
            .unwrap_or_default();
        if !policy.contains("compact") {
            warn!(
                topic,
                cleanup_policy = %policy,
                "this changelog is not compacted: it keeps every write (recovery reads them \
                 all) or retention deletes keys the table still holds; set its \
                 cleanup.policy to compact"
            );
            continue;
        }
        let lag = resource
            .get("min.compaction.lag.ms")
            .and_then(|entry| entry.value.as_deref()?.parse::<i64>().ok())
            .unwrap_or(0);
        if lag < MIN_COMPACTION_LAG_MS {
            warn!(
                topic,
                min_compaction_lag_ms = lag,
                "this changelog lets compaction delete a record as soon as a newer one of its \
                 key exists, which recovery after a crash may still need; set its \
                 min.compaction.lag.ms to {MIN_COMPACTION_LAG_MS} (one day) or more"
            );
        }
    }
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
