//! App configuration: set in code, overridden by `FAUST_*` environment variables,
//! overridden by CLI flags (lowest precedence first).
//!
//! The parsers here are shared by the code builder and by the CLI, so a wrong value
//! gets the same one-line explanation wherever it comes from.

mod kafka;
mod topic;
mod web;

use std::{path::PathBuf, time::Duration};

pub use kafka::{ClientSetting, Clients, Sasl, SaslMechanism, Secret, Tls};
pub use topic::{CreateTopics, Topic};
pub use web::WebTls;

use crate::{Error, Result};

/// Where the worker finds Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerSpec {
    /// No broker configured: an in-process Kafka-protocol broker lives as long as the worker.
    Embedded,
    /// A real cluster, as `host:port` bootstrap addresses.
    Kafka(Vec<String>),
}

impl BrokerSpec {
    /// Parses `kafka://host:port[,kafka://host:port...]` (`;` also separates, the
    /// `kafka://` scheme is optional) or `embedded`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("embedded") {
            return Ok(BrokerSpec::Embedded);
        }
        let mut hosts = Vec::new();
        for url in text
            .split([',', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let address = match url.split_once("://") {
                Some(("kafka", rest)) => rest,
                Some((scheme, _)) => {
                    return Err(format!(
                        "broker URL '{url}' has scheme '{scheme}://'; use kafka://host:port"
                    ))
                }
                None => url,
            };
            let address = address.trim_end_matches('/');
            let Some((host, port)) = address.rsplit_once(':') else {
                return Err(format!(
                    "broker URL '{url}' has no port; use kafka://host:port"
                ));
            };
            if host.is_empty() {
                return Err(format!(
                    "broker URL '{url}' has no host; use kafka://host:port"
                ));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => hosts.push(format!("{host}:{p}")),
                _ => {
                    return Err(format!(
                    "broker URL '{url}' has port '{port}', which is not a number from 1 to 65535"
                ))
                }
            }
        }
        if hosts.is_empty() {
            return Err("the broker list is empty; use kafka://host:port or 'embedded'".into());
        }
        Ok(BrokerSpec::Kafka(hosts))
    }
}

/// Where a consumer starts in a partition that has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The partition's first offset.
    Earliest,
    /// The partition's end: only messages that arrive from now on.
    Latest,
}

impl OffsetReset {
    /// Parses `earliest` or `latest`.
    pub fn parse(text: &str) -> Result<OffsetReset, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            _ => Err(format!(
                "'{text}' is not an offset reset; use earliest or latest"
            )),
        }
    }

    pub(crate) fn as_kafka(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// The worker's settings. Build it with [`crate::App::builder`]; read it from
/// [`crate::App::config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The app id: prefix of internal topics, and the consumer group id unless
    /// `group_id` says otherwise.
    pub id: String,
    /// The consumer group, when it is not the app id: to take over from a Python Faust
    /// app whose group the broker keeps for Faust's protocol (see `copy-offsets`).
    pub group_id: Option<String>,
    /// Where the worker finds Kafka.
    pub broker: BrokerSpec,
    /// TLS to the brokers (none: plain text).
    pub broker_tls: Option<Tls>,
    /// SASL authentication to the brokers.
    pub broker_sasl: Option<Sasl>,
    /// librdkafka properties passed through to the worker's Kafka clients, applied
    /// after faust-rs's own (later ones win).
    pub kafka_settings: Vec<ClientSetting>,
    /// Local state lives here; defaults to `{id}-data`.
    pub datadir: PathBuf,
    /// Partitions of topics the app creates.
    pub topic_partitions: i32,
    /// Replicas of each topic the app creates (Faust's `topic_replication_factor`), at
    /// most the cluster's broker count.
    pub topic_replication_factor: i32,
    /// Where to start in a partition with no committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Commit acknowledged offsets at least this often...
    pub commit_interval: Duration,
    /// ...and whenever this many events were acknowledged since the last commit.
    pub commit_every: u64,
    /// Serve `/health`, `/metrics`, `/stats`, table lookups and the status page.
    pub web_enabled: bool,
    /// Port of the worker's web server; 0 picks a free one (the log says which).
    pub web_port: u16,
    /// Address the web server listens on.
    pub web_bind: String,
    /// Host name other workers and clients reach this worker's web server by; table
    /// lookups for keys another worker holds are redirected to `http://{web_host}:{port}`.
    pub web_host: String,
    /// Tables served at `/tables/{table}/{key}` besides those declared with `web = true`.
    pub web_tables: Vec<String>,
    /// When set, `/tables`, `/stats`, `/assignment` and the status page answer only
    /// requests with `Authorization: Bearer {token}`; `/health` and `/metrics` stay open.
    pub web_token: Option<Secret>,
    /// TLS on the web port, and the CA of the client certificates it requires.
    pub web_tls: Option<WebTls>,
    /// Which missing topics the worker creates (default: the app's internal ones).
    pub create_topics: CreateTopics,
    /// Topics declared in code: partitions, replicas and settings of each.
    pub topics: Vec<Topic>,
    /// In-memory channels (Python Faust's `app.channel()`): names agents read, sink to and
    /// send to like topics, handed over inside the worker instead of through the broker.
    pub channels: Vec<String>,
    /// A partition with this many events in flight is paused until half have been acknowledged.
    pub max_buffered_per_partition: usize,
    /// How long a revocation waits for the events actors already started.
    pub drain_timeout: Duration,
    /// A partition with messages waiting whose committed offset has not moved for this
    /// long is reported (log and `faust_partition_stalled`).
    pub stall_timeout: Duration,
    /// Whether agents stamp what they send with its origin (`faust-origin`) and skip
    /// records they applied already: exact counts across internal topics (see `origin`).
    pub origin_headers: bool,
    /// On how many other workers each table partition is kept warm (Faust's
    /// `table_standby_replicas`): a partition moving to one of them replays only the
    /// changelog's tail (see `tables::standby`). Needs the web server's directory.
    pub standby_replicas: usize,
    /// Messages an agent cannot decode are copied here (with the error in a header)
    /// before they are skipped.
    pub dead_letter_topic: Option<String>,
    /// The consumer-group session timeout: how soon a silent worker's partitions move.
    pub session_timeout: Duration,
    /// The longest the consumer may go without polling before librdkafka gives up its
    /// group membership (`max.poll.interval.ms`; Faust's `broker_max_poll_interval`).
    /// Recovery does not count: it runs while the consumer polls.
    pub broker_max_poll_interval: Duration,
    /// How long the producer keeps retrying a message (through a broker outage) before
    /// its delivery fails (librdkafka's `message.timeout.ms`; Faust's setting of the
    /// same name). An event whose message fails stops the worker, unacknowledged.
    pub producer_request_timeout: Duration,
    /// A stable identity for this worker in the consumer group (Kafka static
    /// membership): a worker restarted with the same id takes its place and partitions
    /// back without a rebalance.
    pub instance_id: Option<String>,
    /// How often an agent actor may fail before the worker stops.
    pub restart_limit: RestartLimit,
    /// The topic this worker's asks get their replies on (Faust's `reply_to`);
    /// `None`: `f-reply-{uuid}`, new for each run, as in Faust.
    pub reply_to: Option<String>,
    /// How long replies stay in the reply topic (its `retention.ms`; Faust's
    /// `reply_expires`).
    pub reply_expires: Duration,
    /// How long an ask (or each reply of a `join`/`map`) is waited for before it fails
    /// with [`crate::Error::NoReply`].
    pub reply_timeout: Duration,
}

impl Config {
    /// The defaults for the app `id`.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        Config {
            datadir: PathBuf::from(format!("{id}-data")),
            id,
            group_id: None,
            broker: BrokerSpec::Embedded,
            broker_tls: None,
            broker_sasl: None,
            kafka_settings: Vec::new(),
            topic_partitions: 8,
            topic_replication_factor: 1,
            auto_offset_reset: OffsetReset::Earliest,
            commit_interval: Duration::from_secs(1),
            commit_every: 10_000,
            web_enabled: true,
            web_port: 6066,
            web_bind: "0.0.0.0".into(),
            web_host: default_web_host(),
            web_tables: Vec::new(),
            web_token: None,
            web_tls: None,
            create_topics: CreateTopics::Internal,
            topics: Vec::new(),
            channels: Vec::new(),
            max_buffered_per_partition: 10_000,
            drain_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            origin_headers: true,
            standby_replicas: 0,
            dead_letter_topic: None,
            session_timeout: Duration::from_secs(10),
            broker_max_poll_interval: Duration::from_secs(300),
            // Faust's default: outages shorter than this are ridden out.
            producer_request_timeout: Duration::from_secs(20 * 60),
            instance_id: None,
            restart_limit: RestartLimit::default(),
            reply_to: None,
            reply_expires: Duration::from_secs(24 * 3600),
            reply_timeout: Duration::from_secs(60),
        }
    }

    /// The consumer group the worker joins: `group_id`, else the app id.
    pub fn group(&self) -> &str {
        self.group_id.as_deref().unwrap_or(&self.id)
    }

    /// Checks what the parsers cannot see alone.
    pub fn validate(&self) -> Result<()> {
        parse_app_id(&self.id).map_err(Error::Config)?;
        if let Some(group) = &self.group_id {
            parse_app_id(group).map_err(|e| Error::Config(format!("the group id: {e}")))?;
        }
        if self.topic_partitions < 1 {
            return Err(Error::Config(format!(
                "topic partitions must be at least 1, got {}",
                self.topic_partitions
            )));
        }
        if self.topic_replication_factor < 1 {
            return Err(Error::Config(format!(
                "the topic replication factor must be at least 1, got {}",
                self.topic_replication_factor
            )));
        }
        if self.commit_every == 0 {
            return Err(Error::Config("commit_every must be at least 1".into()));
        }
        if self.max_buffered_per_partition == 0 {
            return Err(Error::Config(
                "max_buffered_per_partition must be at least 1".into(),
            ));
        }
        if self.web_enabled {
            self.web_bind.parse::<std::net::IpAddr>().map_err(|_| {
                Error::Config(format!(
                    "the web bind address '{}' is not an IP address; use e.g. 0.0.0.0 or 127.0.0.1",
                    self.web_bind
                ))
            })?;
            if self.web_host.is_empty() || self.web_host.contains(['/', ' ', ':']) {
                return Err(Error::Config(format!(
                    "the web host '{}' is not a host name; use e.g. worker-1.example.com or 10.0.0.5",
                    self.web_host
                )));
            }
        }
        if self.datadir.as_os_str().is_empty() {
            return Err(Error::Config("the datadir must not be empty".into()));
        }
        for topic in &self.topics {
            topic.validate().map_err(Error::Config)?;
        }
        self.validate_security()
    }

    /// Credentials must be complete and their files readable: a typo shows at start, by
    /// the setting's name, not as a handshake failing again and again.
    fn validate_security(&self) -> Result<()> {
        if let Some(sasl) = &self.broker_sasl {
            if sasl.username.is_empty() {
                return Err(Error::Config(
                    "SASL needs a user name: give --broker-username (FAUST_BROKER_USERNAME)".into(),
                ));
            }
            if sasl.password.expose().is_empty() {
                return Err(Error::Config(
                    "SASL needs a password: set FAUST_BROKER_PASSWORD (or --broker-password)"
                        .into(),
                ));
            }
        }
        let broker_files = self.broker_tls.iter().flat_map(|tls| {
            let ca = (tls.ca_file.iter()).map(|ca| ("--broker-ca (FAUST_BROKER_CA)", ca));
            let client = tls.client_cert.iter().flat_map(|(cert, key)| {
                [
                    ("--broker-cert (FAUST_BROKER_CERT)", cert),
                    ("--broker-key (FAUST_BROKER_KEY)", key),
                ]
            });
            ca.chain(client)
        });
        let web_files = self.web_tls.iter().flat_map(WebTls::files);
        for (setting, file) in web_files.chain(broker_files) {
            std::fs::metadata(file).map_err(|e| {
                Error::Config(format!("{setting}: cannot read '{}': {e}", file.display()))
            })?;
        }
        Ok(())
    }

    /// `host:port,...` for librdkafka's `bootstrap.servers`, or `None` for the embedded broker.
    pub fn bootstrap_servers(&self) -> Option<String> {
        match &self.broker {
            BrokerSpec::Embedded => None,
            BrokerSpec::Kafka(hosts) => Some(hosts.join(",")),
        }
    }
}

/// How often an actor may fail before the worker gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestartLimit {
    /// Failures allowed...
    pub failures: usize,
    /// ...within this long.
    pub within: Duration,
}

impl Default for RestartLimit {
    fn default() -> Self {
        RestartLimit {
            failures: 10,
            within: Duration::from_secs(10),
        }
    }
}

/// This machine's host name, as other machines most likely know it.
fn default_web_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// App ids become consumer group ids and topic-name prefixes: keep them Kafka-legal.
pub(crate) fn parse_app_id(id: &str) -> Result<String, String> {
    if id.is_empty() {
        return Err("the app id must not be empty".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the app id '{id}' contains '{c}'; use letters, digits, '.', '_' and '-' (it names Kafka topics)"
        ));
    }
    Ok(id.to_owned())
}

/// Parses `500ms`, `2s`, `2.8s`, `1m`, `1h`, `1d`, or a bare number of seconds (the
/// grammar the macros check at compile time).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    faust_grammar::parse_duration(text)
}

/// A positive partition count.
pub(crate) fn parse_partitions(text: &str) -> Result<i32, String> {
    parse_positive(text, "a partition count")
}

/// A positive replication factor.
pub(crate) fn parse_replicas(text: &str) -> Result<i32, String> {
    parse_positive(text, "a replication factor")
}

/// A whole number of at least 1, or an error saying `text` is not `what`.
fn parse_positive(text: &str, what: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "'{text}' is not {what}; use a whole number of at least 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_tls_file_is_named_with_its_flag() {
        let mut config = Config::new("app");
        config.broker_tls = Some(Tls::ca_file("/nonexistent/ca.pem").client_cert("/c", "/k"));
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("--broker-ca (FAUST_BROKER_CA): cannot read '/nonexistent/ca.pem'"),
            "{error}"
        );
        config.broker_tls = Some(Tls::system_roots().client_cert("/nonexistent/c.pem", "/k"));
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("--broker-cert (FAUST_BROKER_CERT)"),
            "{error}"
        );
        // The web port's files are checked too, first.
        config.web_tls = Some(WebTls::new("/nonexistent/web.crt", "/nonexistent/web.key"));
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("--web-cert (FAUST_WEB_CERT): cannot read '/nonexistent/web.crt'"),
            "{error}"
        );
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerSpec::parse("kafka://a:9092,kafka://b:9093"),
            Ok(BrokerSpec::Kafka(vec!["a:9092".into(), "b:9093".into()]))
        );
        assert_eq!(
            BrokerSpec::parse("localhost:9092;kafka://b:1/"),
            Ok(BrokerSpec::Kafka(vec![
                "localhost:9092".into(),
                "b:1".into()
            ]))
        );
        assert_eq!(BrokerSpec::parse("embedded"), Ok(BrokerSpec::Embedded));
        for (bad, why) in [
            ("http://a:1", "scheme"),
            ("kafka://a", "no port"),
            ("kafka://a:99999", "not a number"),
            ("kafka://:1", "no host"),
            ("", "empty"),
        ] {
            let err = BrokerSpec::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn app_ids_and_partitions() {
        assert!(parse_app_id("orders-app_1.v2").is_ok());
        assert!(parse_app_id("orders app").unwrap_err().contains("' '"));
        assert_eq!(parse_partitions("4"), Ok(4));
        assert!(parse_partitions("0").is_err());
        let mut config = Config::new("x");
        config.topic_partitions = 0;
        assert!(config.validate().is_err());
    }
}
