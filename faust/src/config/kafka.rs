//! How the worker's Kafka clients reach a secured cluster (TLS, SASL), and librdkafka
//! settings passed through to them.

use std::path::PathBuf;

/// TLS to the brokers, like Faust's `ssl_context`: the broker's certificate is checked
/// against `ca_file` (or the system's CAs), and with `client_cert` the worker proves
/// who it is (mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tls {
    /// PEM file of the CA certificates to trust; `None` trusts the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM files of the client certificate and its private key, for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The password of an encrypted private key.
    pub key_password: Option<Secret>,
}

impl Tls {
    /// TLS trusting the system's CA certificates.
    pub fn system_roots() -> Tls {
        Tls::default()
    }

    /// TLS trusting the CA certificates in this PEM file.
    pub fn ca_file(path: impl Into<PathBuf>) -> Tls {
        Tls {
            ca_file: Some(path.into()),
            ..Tls::default()
        }
    }

    /// Also presents this client certificate and private key (PEM files): mutual TLS.
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Tls {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// The password of an encrypted private key.
    pub fn key_password(mut self, password: impl Into<String>) -> Tls {
        self.key_password = Some(Secret::new(password));
        self
    }
}

/// SASL authentication, like Faust's `SASLCredentials`. Over TLS unless the cluster
/// listens for SASL in plain text (SASL_PLAINTEXT): a PLAIN password then travels in
/// the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sasl {
    /// How the credentials are checked.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password; kept out of logs.
    pub password: Secret,
}

impl Sasl {
    /// Credentials for `mechanism`.
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Sasl {
        Sasl {
            mechanism,
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// SASL/PLAIN (Faust's default mechanism).
    pub fn plain(username: impl Into<String>, password: impl Into<String>) -> Sasl {
        Sasl::new(SaslMechanism::Plain, username, password)
    }

    /// SASL/SCRAM-SHA-256.
    pub fn scram_sha_256(username: impl Into<String>, password: impl Into<String>) -> Sasl {
        Sasl::new(SaslMechanism::ScramSha256, username, password)
    }

    /// SASL/SCRAM-SHA-512.
    pub fn scram_sha_512(username: impl Into<String>, password: impl Into<String>) -> Sasl {
        Sasl::new(SaslMechanism::ScramSha512, username, password)
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// The password itself, checked by the broker (use it over TLS).
    #[default]
    Plain,
    /// Salted challenge-response with SHA-256: the password never travels.
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// Parses `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (any case).
    pub fn parse(text: &str) -> Result<SaslMechanism, String> {
        match text.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(format!(
                "'{text}' is not a SASL mechanism faust-rs supports; use PLAIN, SCRAM-SHA-256 \
                 or SCRAM-SHA-512"
            )),
        }
    }

    /// The name librdkafka and Kafka use.
    pub fn as_kafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A string that debug output and logs show as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Which of the worker's Kafka clients a passed-through setting is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Clients {
    /// Every client.
    All,
    /// The consumers: the group's, and those that read changelogs.
    Consumer,
    /// The producer.
    Producer,
    /// The admin client, which creates and describes topics.
    Admin,
}

/// A librdkafka property for some of the worker's clients: `fetch.max.bytes=1048576`
/// for all, `consumer.fetch.max.bytes=1048576` for the consumers only (also `producer.`
/// and `admin.`). See librdkafka's CONFIGURATION.md for the properties.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSetting {
    /// The clients it applies to.
    pub clients: Clients,
    /// The librdkafka property.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl ClientSetting {
    /// Parses `[consumer.|producer.|admin.]property=value`, refusing the properties
    /// faust-rs sets itself (with the setting to use instead).
    pub fn parse(text: &str) -> Result<ClientSetting, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(format!(
                "the Kafka client setting '{text}' has no '='; use property=value, e.g. \
                 consumer.fetch.max.bytes=1048576"
            ));
        };
        let key = key.trim();
        let (clients, property) = match key.split_once('.') {
            Some(("consumer", rest)) => (Clients::Consumer, rest),
            Some(("producer", rest)) => (Clients::Producer, rest),
            Some(("admin", rest)) => (Clients::Admin, rest),
            _ => (Clients::All, key),
        };
        if property.is_empty() {
            return Err(format!(
                "the Kafka client setting '{text}' names no property"
            ));
        }
        if let Some(why) = owned(property) {
            return Err(format!(
                "the Kafka client property '{property}' is faust-rs's own: {why}"
            ));
        }
        Ok(ClientSetting {
            clients,
            key: property.to_owned(),
            value: value.trim().to_owned(),
        })
    }

    /// Settings from `FAUST_KAFKA_<PROPERTY>` variables, the property's dots written as
    /// underscores: `FAUST_KAFKA_CONSUMER_FETCH_MAX_BYTES=1048576`.
    pub(crate) fn from_env(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<ClientSetting>, String> {
        let mut settings = Vec::new();
        for (name, value) in vars {
            let Some(property) = name.strip_prefix("FAUST_KAFKA_") else {
                continue;
            };
            let key = property.to_ascii_lowercase().replace('_', ".");
            let setting = ClientSetting::parse(&format!("{key}={value}"))
                .map_err(|e| format!("{name}: {e}"))?;
            settings.push(setting);
        }
        Ok(settings)
    }
}

impl std::fmt::Debug for ClientSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = ["password", "secret", ".pem", "jaas"]
            .iter()
            .any(|word| self.key.contains(word));
        let value = if secret { "***" } else { &self.value };
        write!(f, "{:?}:{}={value}", self.clients, self.key)
    }
}

/// Why faust-rs sets `property` itself, if it does.
fn owned(property: &str) -> Option<&'static str> {
    Some(match property {
        "bootstrap.servers" | "metadata.broker.list" => {
            "give the brokers with --broker (FAUST_BROKER)"
        }
        "group.id" => "the consumer group is the app id (--id), or --group-id",
        "group.instance.id" => "use --instance-id (FAUST_INSTANCE_ID)",
        "enable.auto.commit" | "enable.auto.offset.store" | "auto.commit.interval.ms" => {
            "faust-rs commits only what its agents processed; see --commit-interval"
        }
        "auto.offset.reset" => "use --auto-offset-reset (FAUST_AUTO_OFFSET_RESET)",
        "enable.partition.eof" => "faust-rs reads partition ends to recover tables",
        "session.timeout.ms" => "use --session-timeout (FAUST_SESSION_TIMEOUT)",
        "max.poll.interval.ms" => "use --broker-max-poll-interval (FAUST_BROKER_MAX_POLL_INTERVAL)",
        "message.timeout.ms" | "delivery.timeout.ms" => {
            "use --producer-request-timeout (FAUST_PRODUCER_REQUEST_TIMEOUT)"
        }
        "partitioner" | "partitioner_cb" => {
            "faust-rs places keys like Faust and Kafka's Java client (murmur2), so tables and \
             the topics that feed them line up"
        }
        "enable.idempotence" => {
            "faust-rs produces idempotently, so a retried changelog write cannot land twice \
             or out of order"
        }
        "transactional.id" => "faust-rs does not use transactions yet",
        "security.protocol" => "it follows from --broker-tls/--broker-ca and --broker-sasl",
        "sasl.mechanism" | "sasl.mechanisms" => "use --broker-sasl (FAUST_BROKER_SASL)",
        "sasl.username" => "use --broker-username (FAUST_BROKER_USERNAME)",
        "sasl.password" => "use --broker-password (FAUST_BROKER_PASSWORD)",
        "ssl.ca.location" => "use --broker-ca (FAUST_BROKER_CA)",
        "ssl.certificate.location" => "use --broker-cert (FAUST_BROKER_CERT)",
        "ssl.key.location" => "use --broker-key (FAUST_BROKER_KEY)",
        "ssl.key.password" => "use --broker-key-password (FAUST_BROKER_KEY_PASSWORD)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_their_clients() {
        let all = ClientSetting::parse("fetch.max.bytes = 1048576").unwrap();
        assert_eq!(
            (all.clients, all.key.as_str(), all.value.as_str()),
            (Clients::All, "fetch.max.bytes", "1048576")
        );
        let producer = ClientSetting::parse("producer.compression.type=lz4").unwrap();
        assert_eq!(
            (producer.clients, producer.key.as_str()),
            (Clients::Producer, "compression.type")
        );
        assert!(ClientSetting::parse("fetch.max.bytes")
            .unwrap_err()
            .contains("no '='"));
        assert!(ClientSetting::parse("consumer.=1")
            .unwrap_err()
            .contains("no property"));
    }

    #[test]
    fn owned_properties_are_refused_with_the_setting_to_use() {
        let err = ClientSetting::parse("consumer.group.id=other").unwrap_err();
        assert!(err.contains("'group.id'") && err.contains("--id"), "{err}");
        let err = ClientSetting::parse("sasl.password=x").unwrap_err();
        assert!(err.contains("FAUST_BROKER_PASSWORD"), "{err}");
    }

    #[test]
    fn environment_variables_become_properties() {
        let vars = [
            ("FAUST_KAFKA_CONSUMER_FETCH_MAX_BYTES", "1048576"),
            ("FAUST_BROKER", "kafka://a:1"),
            ("FAUST_KAFKA_SOCKET_KEEPALIVE_ENABLE", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let settings = ClientSetting::from_env(vars).unwrap();
        assert_eq!(settings.len(), 2);
        assert_eq!(settings[0].key, "fetch.max.bytes");
        assert_eq!(settings[0].clients, Clients::Consumer);
        assert_eq!(
            (settings[1].clients, settings[1].key.as_str()),
            (Clients::All, "socket.keepalive.enable")
        );
        let bad = [(
            "FAUST_KAFKA_ENABLE_AUTO_COMMIT".to_owned(),
            "true".to_owned(),
        )];
        assert!(ClientSetting::from_env(bad)
            .unwrap_err()
            .starts_with("FAUST_KAFKA_ENABLE_AUTO_COMMIT"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let sasl = Sasl::scram_sha_512("alice", "hunter2");
        assert!(!format!("{sasl:?}").contains("hunter2"));
        let setting = ClientSetting::parse("sasl.oauthbearer.client.secret=s3cret").unwrap();
        assert!(!format!("{setting:?}").contains("s3cret"));
        assert_eq!(
            SaslMechanism::parse("scram_sha_256"),
            Ok(SaslMechanism::ScramSha256)
        );
        assert!(SaslMechanism::parse("GSSAPI").is_err());
    }
}
