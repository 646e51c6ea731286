//! How each of the worker's Kafka clients reaches the cluster: the bootstrap addresses,
//! TLS and SASL, and the librdkafka properties the user passed through.

use std::sync::Arc;

use rdkafka::ClientConfig;

use crate::config::{Clients, Config};

/// What every Kafka client of a worker is configured with. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    bootstrap: String,
    /// Applied in order after the client's own properties: security first, then the
    /// user's settings, so a later one wins.
    properties: Arc<[(Clients, String, String)]>,
}

/// The kind of client being configured, for settings meant for some clients only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Consumer,
    Producer,
    Admin,
}

impl Connection {
    /// The connection `config` describes to the brokers at `bootstrap`; `secured` is
    /// false for the embedded broker, which speaks plain text only.
    pub(crate) fn new(bootstrap: String, config: &Config, secured: bool) -> Connection {
        let mut properties = Vec::new();
        let mut all = |key: &str, value: &str| {
            properties.push((Clients::All, key.to_owned(), value.to_owned()));
        };
        if secured {
            let protocol = match (&config.broker_tls, &config.broker_sasl) {
                (None, None) => "plaintext",
                (Some(_), None) => "ssl",
                (None, Some(_)) => "sasl_plaintext",
                (Some(_), Some(_)) => "sasl_ssl",
            };
            all("security.protocol", protocol);
            if let Some(tls) = &config.broker_tls {
                if let Some(ca) = &tls.ca_file {
                    all("ssl.ca.location", &ca.to_string_lossy());
                }
                if let Some((cert, key)) = &tls.client_cert {
                    all("ssl.certificate.location", &cert.to_string_lossy());
                    all("ssl.key.location", &key.to_string_lossy());
                }
                if let Some(password) = &tls.key_password {
                    all("ssl.key.password", password.expose());
                }
            }
            if let Some(sasl) = &config.broker_sasl {
                all("sasl.mechanism", sasl.mechanism.as_kafka());
                all("sasl.username", &sasl.username);
                all("sasl.password", sasl.password.expose());
            }
        }
        properties.extend(
            config
                .kafka_settings
                .iter()
                .map(|s| (s.clients, s.key.clone(), s.value.clone())),
        );
        Connection {
            bootstrap,
            properties: properties.into(),
        }
    }

    /// The bootstrap addresses, `host:port,...`.
    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Completes a client's configuration: the brokers, then security and the user's
    /// settings for `role` over the client's own properties.
    pub(crate) fn apply<'c>(
        &self,
        role: Role,
        client: &'c mut ClientConfig,
    ) -> &'c mut ClientConfig {
        client.set("bootstrap.servers", &self.bootstrap);
        for (clients, key, value) in self.properties.iter() {
            let meant = match clients {
                Clients::All => true,
                Clients::Consumer => role == Role::Consumer,
                Clients::Producer => role == Role::Producer,
                Clients::Admin => role == Role::Admin,
            };
            if meant {
                client.set(key, value);
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientSetting, Sasl, Tls};

    #[test]
    fn security_and_settings_reach_the_clients_they_are_for() {
        let mut config = Config::new("app");
        config.broker_tls = Some(Tls::ca_file("/ca.pem"));
        config.broker_sasl = Some(Sasl::scram_sha_256("alice", "pw"));
        config.kafka_settings = ["consumer.fetch.max.bytes=1024", "linger.ms=1"]
            .iter()
            .map(|s| ClientSetting::parse(s).unwrap())
            .collect();
        let connection = Connection::new("a:1".into(), &config, true);
        let consumer = connection
            .apply(Role::Consumer, &mut ClientConfig::new())
            .clone();
        assert_eq!(consumer.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(consumer.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(consumer.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(consumer.get("fetch.max.bytes"), Some("1024"));
        let producer = connection
            .apply(Role::Producer, ClientConfig::new().set("linger.ms", "5"))
            .clone();
        assert_eq!(producer.get("fetch.max.bytes"), None);
        assert_eq!(
            producer.get("linger.ms"),
            Some("1"),
            "the user's setting wins"
        );

        let embedded = Connection::new("b:2".into(), &config, false);
        let admin = embedded
            .apply(Role::Admin, &mut ClientConfig::new())
            .clone();
        assert_eq!(admin.get("security.protocol"), None);
        assert_eq!(admin.get("bootstrap.servers"), Some("b:2"));
    }
}
