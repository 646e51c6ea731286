//! The command line: `worker`, `send`, `agents`, `tables` and the app's own commands.
//!
//! Every setting is a global flag with a `FAUST_*` environment variable behind it; flags
//! win over the environment, which wins over what the app set in code.

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::{
    parser::ValueSource, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand,
};
use tracing_subscriber::EnvFilter;

use crate::{
    app::{App, AppBuilder, Parts},
    config::{
        parse_app_id, parse_duration, parse_partitions, parse_replicas, BrokerSpec, ClientSetting,
        Config, CreateTopics, OffsetReset, Sasl, SaslMechanism, Secret, Tls, WebTls,
    },
    context::WorkerContext,
    leader::Leadership,
    registry::Registry,
    send::Outgoing,
    sensors::Sensors,
    tables::{count_keys, lock_datadir, tables_dir},
    time::Clock,
    transport::{broker::Broker, consumer, producer::Producer, replies::ReplyTopic},
    worker::Worker,
    Error, Result,
};

#[derive(Parser)]
#[command(subcommand_required = true, arg_required_else_help = true)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Builtin,
}

/// Settings shared by every command (flag > `FAUST_*` variable > code).
#[derive(Args)]
struct Settings {
    /// App id: the consumer group and the prefix of the app's internal topics
    #[arg(long, global = true, env = "FAUST_ID", value_parser = parse_app_id)]
    id: Option<String>,
    /// Kafka bootstrap brokers, kafka://host:port[,kafka://host:port]; without it the worker runs on an embedded in-process broker
    #[arg(long, short = 'b', global = true, env = "FAUST_BROKER", value_name = "URL", value_parser = BrokerSpec::parse)]
    broker: Option<BrokerSpec>,
    /// Connect to the brokers over TLS, trusting the system's CA certificates (--broker-ca implies it)
    #[arg(long, global = true, env = "FAUST_BROKER_TLS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    broker_tls: Option<bool>,
    /// PEM file of the CA certificates that signed the brokers' certificates; turns TLS on
    #[arg(long, global = true, env = "FAUST_BROKER_CA", value_name = "FILE")]
    broker_ca: Option<PathBuf>,
    /// PEM file of this worker's client certificate, for mutual TLS (with --broker-key)
    #[arg(
        long,
        global = true,
        env = "FAUST_BROKER_CERT",
        value_name = "FILE",
        requires = "broker_key"
    )]
    broker_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key
    #[arg(
        long,
        global = true,
        env = "FAUST_BROKER_KEY",
        value_name = "FILE",
        requires = "broker_cert"
    )]
    broker_key: Option<PathBuf>,
    /// Password of an encrypted private key
    #[arg(
        long,
        global = true,
        env = "FAUST_BROKER_KEY_PASSWORD",
        hide_env_values = true
    )]
    broker_key_password: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 [default: PLAIN when a user name is given]
    #[arg(long, global = true, env = "FAUST_BROKER_SASL", value_name = "MECHANISM", value_parser = SaslMechanism::parse)]
    broker_sasl: Option<SaslMechanism>,
    /// SASL user name
    #[arg(
        long,
        global = true,
        env = "FAUST_BROKER_USERNAME",
        value_name = "USER"
    )]
    broker_username: Option<String>,
    /// SASL password (prefer the variable: flags show in process lists)
    #[arg(
        long,
        global = true,
        env = "FAUST_BROKER_PASSWORD",
        hide_env_values = true
    )]
    broker_password: Option<String>,
    /// A librdkafka property for the worker's Kafka clients: [consumer.|producer.|admin.]property=value; repeat for more; also FAUST_KAFKA_<PROPERTY> with dots as underscores
    #[arg(long = "kafka", global = true, value_name = "PROPERTY=VALUE", value_parser = ClientSetting::parse)]
    kafka: Vec<ClientSetting>,
    /// Directory for local state [default: <id>-data]
    #[arg(long, global = true, env = "FAUST_DATADIR")]
    datadir: Option<PathBuf>,
    /// Partitions of the topics the app creates [default: 8]
    #[arg(long, global = true, env = "FAUST_TOPIC_PARTITIONS", value_parser = parse_partitions)]
    partitions: Option<i32>,
    /// Replicas of each topic the app creates, at most the cluster's broker count [default: 1]
    #[arg(long, global = true, env = "FAUST_TOPIC_REPLICATION_FACTOR", value_parser = parse_replicas, value_name = "N")]
    topic_replication_factor: Option<i32>,
    /// Where to start in a partition with no committed offset [default: earliest]
    #[arg(long, global = true, env = "FAUST_AUTO_OFFSET_RESET", value_parser = OffsetReset::parse, value_name = "earliest|latest")]
    auto_offset_reset: Option<OffsetReset>,
    /// Commit processed offsets at least this often, e.g. 500ms, 2s [default: 1s]
    #[arg(long, global = true, env = "FAUST_COMMIT_INTERVAL", value_parser = parse_duration)]
    commit_interval: Option<Duration>,
    /// ...and after this many processed events [default: 10000]
    #[arg(long, global = true, env = "FAUST_COMMIT_EVERY", value_parser = clap::value_parser!(u64).range(1..))]
    commit_every: Option<u64>,
    /// Port of the worker's web server; 0 picks a free one [default: 6066]
    #[arg(long, global = true, env = "FAUST_WEB_PORT")]
    web_port: Option<u16>,
    /// Address the web server listens on [default: 0.0.0.0]
    #[arg(long, global = true, env = "FAUST_WEB_BIND", value_name = "IP")]
    web_bind: Option<String>,
    /// Host name clients and other workers reach this worker's web server by [default: the machine's host name]
    #[arg(long, global = true, env = "FAUST_WEB_HOST", value_name = "HOST")]
    web_host: Option<String>,
    /// Tables to serve at /tables/{table}/{key} besides those declared with web = true, comma-separated
    #[arg(
        long,
        global = true,
        env = "FAUST_WEB_TABLES",
        value_name = "TABLE,...",
        value_delimiter = ','
    )]
    web_tables: Vec<String>,
    /// Answer only requests with "Authorization: Bearer TOKEN" (all but /health and /metrics); prefer the variable
    #[arg(long, global = true, env = "FAUST_WEB_TOKEN", hide_env_values = true)]
    web_token: Option<String>,
    /// PEM file of the web server's certificate chain: serve the web port over TLS (with --web-key)
    #[arg(
        long,
        global = true,
        env = "FAUST_WEB_CERT",
        value_name = "FILE",
        requires = "web_key"
    )]
    web_cert: Option<PathBuf>,
    /// PEM file of the web server certificate's private key
    #[arg(
        long,
        global = true,
        env = "FAUST_WEB_KEY",
        value_name = "FILE",
        requires = "web_cert"
    )]
    web_key: Option<PathBuf>,
    /// PEM file of the CA whose client certificates the web server requires (all but /health and /metrics)
    #[arg(
        long,
        global = true,
        env = "FAUST_WEB_CLIENT_CA",
        value_name = "FILE",
        requires = "web_cert"
    )]
    web_client_ca: Option<PathBuf>,
    /// Run without the web server (no /health, /metrics, /stats, table lookups or status page)
    #[arg(long, global = true, env = "FAUST_WITHOUT_WEB", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    without_web: Option<bool>,
    /// Which missing topics to create: internal (the app's own: agents' own topics, repartition, changelogs), all (also source and sink topics), or none [default: internal]
    #[arg(long, global = true, env = "FAUST_CREATE_TOPICS", value_parser = CreateTopics::parse, value_name = "internal|all|none")]
    create_topics: Option<CreateTopics>,
    /// Warn when a partition with messages waiting has not committed progress for this long [default: 60s]
    #[arg(long, global = true, env = "FAUST_STALL_TIMEOUT", value_parser = parse_duration)]
    stall_timeout: Option<Duration>,
    /// Stamp what agents send with its origin (header faust-origin) and skip records already applied: exact counts across internal topics [default: true]
    #[arg(long, global = true, env = "FAUST_ORIGIN_HEADERS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    origin_headers: Option<bool>,
    /// Keep each table partition warm on this many other workers, so a partition that moves to one replays only the changelog's tail [default: 0]
    #[arg(long, global = true, env = "FAUST_STANDBY_REPLICAS", value_name = "N")]
    standby_replicas: Option<usize>,
    /// How long a rebalance waits for the events of revoked partitions that agents already started [default: 30s]
    #[arg(long, global = true, env = "FAUST_DRAIN_TIMEOUT", value_parser = parse_duration)]
    drain_timeout: Option<Duration>,
    /// How long an agent ask waits for its reply (and a join or map for each next one) before it fails [default: 60s]
    #[arg(long, global = true, env = "FAUST_REPLY_TIMEOUT", value_parser = parse_duration)]
    reply_timeout: Option<Duration>,
    /// The topic this worker's asks get their replies on [default: f-reply-UUID, new each run]
    #[arg(long, global = true, env = "FAUST_REPLY_TO", value_name = "TOPIC")]
    reply_to: Option<String>,
    /// How long the producer retries a message through a broker outage before its delivery fails; an event whose message fails stops the worker, unacknowledged [default: 20m]
    #[arg(long, global = true, env = "FAUST_PRODUCER_REQUEST_TIMEOUT", value_parser = parse_duration)]
    producer_request_timeout: Option<Duration>,
    /// Copy messages that cannot be decoded to this topic (error in the faust-error header) before skipping them
    #[arg(
        long,
        global = true,
        env = "FAUST_DEAD_LETTER_TOPIC",
        value_name = "TOPIC"
    )]
    dead_letter_topic: Option<String>,
    /// The consumer-group session timeout: how soon the group gives a silent worker's partitions to others [default: 10s]
    #[arg(long, global = true, env = "FAUST_SESSION_TIMEOUT", value_parser = parse_duration)]
    session_timeout: Option<Duration>,
    /// The longest the consumer may go without polling (a rebalance waiting for events, a commit waiting for its changelog) before it leaves the group; at least the session timeout [default: 5m]
    #[arg(long, global = true, env = "FAUST_BROKER_MAX_POLL_INTERVAL", value_parser = parse_duration)]
    broker_max_poll_interval: Option<Duration>,
    /// The consumer group, when it is not the app id (taking over from a Python Faust app; see copy-offsets)
    #[arg(long, global = true, env = "FAUST_GROUP_ID", value_name = "GROUP")]
    group_id: Option<String>,
    /// A stable identity in the consumer group (static membership): a worker restarted with the same id gets its partitions back without a rebalance
    #[arg(long, global = true, env = "FAUST_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Log level; RUST_LOG gives finer control when this flag is not on the command line [default: info]
    #[arg(long, short = 'l', global = true, env = "FAUST_LOGLEVEL",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    loglevel: Option<String>,
}

impl Settings {
    fn apply(self, mut config: Config) -> Config {
        self.apply_security(&mut config);
        if let Some(id) = self.id {
            let default_datadir = PathBuf::from(format!("{}-data", config.id));
            if config.datadir == default_datadir {
                config.datadir = PathBuf::from(format!("{id}-data"));
            }
            config.id = id;
        }
        if let Some(broker) = self.broker {
            config.broker = broker;
        }
        if let Some(dir) = self.datadir {
            config.datadir = dir;
        }
        if let Some(p) = self.partitions {
            config.topic_partitions = p;
        }
        if let Some(n) = self.topic_replication_factor {
            config.topic_replication_factor = n;
        }
        if let Some(r) = self.auto_offset_reset {
            config.auto_offset_reset = r;
        }
        if let Some(i) = self.commit_interval {
            config.commit_interval = i;
        }
        if let Some(n) = self.commit_every {
            config.commit_every = n;
        }
        if let Some(p) = self.web_port {
            config.web_port = p;
        }
        if let Some(bind) = self.web_bind {
            config.web_bind = bind;
        }
        if let Some(host) = self.web_host {
            config.web_host = host;
        }
        config.web_tables.extend(self.web_tables);
        if let Some(token) = self.web_token {
            config.web_token = Some(Secret::new(token));
        }
        if let (Some(cert), Some(key)) = (self.web_cert, self.web_key) {
            config.web_tls = Some(WebTls::new(cert, key));
        }
        if let (Some(tls), Some(ca)) = (&mut config.web_tls, self.web_client_ca) {
            tls.client_ca = Some(ca);
        }
        if let Some(without) = self.without_web {
            config.web_enabled = !without;
        }
        if let Some(c) = self.create_topics {
            config.create_topics = c;
        }
        if let Some(timeout) = self.stall_timeout {
            config.stall_timeout = timeout;
        }
        if let Some(on) = self.origin_headers {
            config.origin_headers = on;
        }
        if let Some(n) = self.standby_replicas {
            config.standby_replicas = n;
        }
        if let Some(timeout) = self.drain_timeout {
            config.drain_timeout = timeout;
        }
        if let Some(timeout) = self.reply_timeout {
            config.reply_timeout = timeout;
        }
        if let Some(topic) = self.reply_to {
            config.reply_to = Some(topic);
        }
        if let Some(timeout) = self.producer_request_timeout {
            config.producer_request_timeout = timeout;
        }
        if let Some(topic) = self.dead_letter_topic {
            config.dead_letter_topic = Some(topic);
        }
        if let Some(timeout) = self.session_timeout {
            config.session_timeout = timeout;
        }
        if let Some(interval) = self.broker_max_poll_interval {
            config.broker_max_poll_interval = interval;
        }
        if let Some(group) = self.group_id {
            config.group_id = Some(group);
        }
        if let Some(instance) = self.instance_id {
            config.instance_id = Some(instance);
        }
        config.kafka_settings.extend(self.kafka);
        config
    }

    fn apply_security(&self, config: &mut Config) {
        match self.broker_tls {
            Some(true) => {
                config.broker_tls.get_or_insert_with(Tls::system_roots);
            }
            Some(false) => config.broker_tls = None,
            None => {}
        }
        let tls_file = self.broker_ca.is_some() || self.broker_cert.is_some();
        if tls_file || self.broker_key_password.is_some() {
            let tls = config.broker_tls.get_or_insert_with(Tls::system_roots);
            if let Some(ca) = &self.broker_ca {
                tls.ca_file = Some(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&self.broker_cert, &self.broker_key) {
                tls.client_cert = Some((cert.clone(), key.clone()));
            }
            if let Some(password) = &self.broker_key_password {
                tls.key_password = Some(Secret::new(password));
            }
        }
        if self.broker_sasl.is_some()
            || self.broker_username.is_some()
            || self.broker_password.is_some()
        {
            let sasl = config
                .broker_sasl
                .get_or_insert_with(|| Sasl::plain("", ""));
            if let Some(mechanism) = self.broker_sasl {
                sasl.mechanism = mechanism;
            }
            if let Some(username) = &self.broker_username {
                sasl.username = username.clone();
            }
            if let Some(password) = &self.broker_password {
                sasl.password = Secret::new(password);
            }
        }
    }
}

#[derive(Subcommand)]
enum Builtin {
    /// Run the worker: consume the agents' topics and process them until SIGINT/SIGTERM
    /// (a second signal exits at once).
    Worker,
    /// Send a value to a topic, or to an agent by name, and print where it landed.
    ///
    /// KEY and VALUE are sent as given (bytes): pass JSON values for JSON agents, and
    /// keys as text, as faust::send and Python Faust write string keys, e.g.
    /// send orders '{"amount": 3}' --key alice. Without VALUE a tombstone (null) is sent.
    Send {
        /// A topic name, or an agent name (sends to the topic it consumes)
        target: String,
        /// The message value
        value: Option<String>,
        /// The message key
        #[arg(long, short)]
        key: Option<String>,
        /// Send to this partition instead of the key's
        #[arg(long, short)]
        partition: Option<i32>,
        /// Send the message this many times
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        repeat: u64,
        /// How the key is written: raw (its text as bytes, as Python Faust and most
        /// producers write string keys) or json (the key is JSON, checked: --key 42,
        /// --key '"alice"', --key '{"id": 1}')
        #[arg(long, value_enum, default_value_t = SendCodec::Raw)]
        key_codec: SendCodec,
        /// How the value is written: raw (its text as bytes) or json (the value must be
        /// JSON: '"a string"', 42, '{"amount": 3}')
        #[arg(long, value_enum, default_value_t = SendCodec::Raw)]
        value_codec: SendCodec,
        /// A header, NAME=VALUE (repeat the flag for more)
        #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// The message's timestamp, in milliseconds since the Unix epoch [default: now]
        #[arg(long, value_name = "MS")]
        timestamp: Option<i64>,
    },
    /// List the registered agents with their topics, sinks, concurrency and codec.
    Agents,
    /// List the declared tables: changelog, partitions, and the keys held in this
    /// worker's datadir.
    Tables,
    /// Start the app's consumer group where another group stopped: commit, for the
    /// app's group, the offsets GROUP committed on the topics the agents read.
    ///
    /// The takeover path from a Python Faust app on a broker that keeps Faust's group
    /// for its assignor protocol (tansu): run faust-rs with a group of its own
    /// (--group-id), copy Faust's offsets into it once, then start the worker.
    CopyOffsets {
        /// The group to copy from (a Faust app's group is its app id)
        #[arg(long, value_name = "GROUP")]
        from: String,
    },
    /// Delete this app's local table state (the datadir's tables); the next worker
    /// rebuilds it from the changelogs.
    Reset {
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
}

/// How `send` writes a key or value given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SendCodec {
    /// The text as bytes.
    Raw,
    /// JSON, checked before anything is sent.
    Json,
}

impl SendCodec {
    /// Refuses `text` that is not what this codec writes.
    fn check(self, what: &str, text: Option<&str>) -> Result<()> {
        match (self, text) {
            (SendCodec::Json, Some(text)) => serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map(|_| ())
                .map_err(|e| {
                    Error::Config(format!(
                        "{what} is not JSON ({e}): {text}; quote a string as '\"{text}\"', \
                         or send the text as it is with the raw codec"
                    ))
                }),
            _ => Ok(()),
        }
    }
}

/// `NAME=VALUE`.
fn parse_header(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("a header is NAME=VALUE, not {text:?}")),
    }
}

/// The generated `main`: parses the command line, then runs the command. Returns the
/// process exit code; errors are printed as one line.
pub fn main(builder: AppBuilder, name: &'static str, version: &'static str) -> ExitCode {
    match run(builder, name, version) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn command(name: &'static str, version: &'static str, registry: &Registry) -> clap::Command {
    let mut command = Cli::command()
        .name(name)
        .version(version)
        .about(format!("{name}: a faust-rs stream processing app"));
    for user in &registry.commands {
        // The fn's doc, over that of its arguments' type.
        let subcommand = (user.arguments)(clap::Command::new(user.name));
        let subcommand = match user.about.is_empty() {
            true => subcommand,
            false => subcommand.about(user.about).long_about(None),
        };
        command = command.subcommand(subcommand);
    }
    command
}

fn run(builder: AppBuilder, name: &'static str, version: &'static str) -> Result<()> {
    let registry = Registry::collect()?;
    let matches = command(name, version, &registry).get_matches();
    init_logging(&matches);
    let app = configured(builder, &matches, registry)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            context: "starting the async runtime".into(),
            source: e,
        })?;

    if let Some((name, sub)) = matches.subcommand() {
        if let Some(user) = app.registry().commands.iter().find(|c| c.name == name) {
            return runtime.block_on(with_producer(&app, (user.run)(sub)));
        }
    }
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::Config(e.to_string()))?;
    match cli.command {
        Builtin::Worker => runtime.block_on(Worker::new(app).run()),
        Builtin::Agents => {
            print_agents(&app);
            Ok(())
        }
        Builtin::Tables => print_tables(&app),
        Builtin::Reset { yes } => reset(&app, yes),
        Builtin::CopyOffsets { from } => runtime.block_on(copy_offsets(&app, &from)),
        Builtin::Send {
            target,
            value,
            key,
            partition,
            repeat,
            key_codec,
            value_codec,
            headers,
            timestamp,
        } => runtime.block_on(with_producer(&app, async move {
            key_codec.check("--key", key.as_deref())?;
            value_codec.check("the value", value.as_deref())?;
            let mut message = Outgoing::to(&target);
            if let Some(key) = &key {
                message = message.key_bytes(key.as_bytes());
            }
            if let Some(partition) = partition {
                message = message.partition(partition);
            }
            for (name, value) in &headers {
                message = message.header(name, value);
            }
            if let Some(timestamp) = timestamp {
                message = message.timestamp_ms(timestamp);
            }
            // Queue them all, then report each delivery: a round trip for the lot.
            let mut sent = Vec::new();
            for _ in 0..repeat {
                let value = value.as_deref().map(str::as_bytes);
                sent.push(message.clone().send_bytes(value).await?);
            }
            for sent in sent {
                let delivered = sent.delivered().await?;
                println!(
                    "sent to {target} partition {} offset {}",
                    delivered.partition, delivered.offset
                );
            }
            Ok(())
        })),
    }
}

/// The app of `builder`, with the settings of `matches` (flags and `FAUST_*` variables)
/// over the code's.
fn configured(builder: AppBuilder, matches: &ArgMatches, registry: Registry) -> Result<App> {
    let settings = Settings::from_arg_matches(matches).map_err(|e| Error::Config(e.to_string()))?;
    let Parts {
        mut config,
        sensors,
        services,
    } = builder.into_parts()?;
    // FAUST_KAFKA_* variables come after the code's settings and before the flags'.
    let env = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)));
    config
        .kafka_settings
        .extend(ClientSetting::from_env(env).map_err(Error::Config)?);
    let app = sensors.into_iter().fold(
        App::new(settings.apply(config), registry)?,
        App::with_sensor,
    );
    Ok(services.into_iter().fold(app, App::with_service))
}

// Here rather than in app.rs: the `FAUST_*` variables are the command line's.
impl AppBuilder {
    /// Builds the app as the generated `main` does, for a program with a `main` of its
    /// own (a worker inside your web server): the `FAUST_*` environment variables
    /// override the settings given in code, and the worker logs as `worker` does
    /// (`FAUST_LOGLEVEL`, `RUST_LOG`) unless the program set up `tracing` itself.
    pub fn build_from_env(self) -> Result<App> {
        let matches = Settings::augment_args(clap::Command::new("app"))
            .try_get_matches_from(["app"])
            .map_err(|e| Error::Config(e.to_string()))?;
        init_logging(&matches);
        configured(self, &matches, Registry::collect()?)
    }
}

/// `copy-offsets --from GROUP` (see `transport::consumer::copy_offsets`).
async fn copy_offsets(app: &App, from: &str) -> Result<()> {
    if app.config().bootstrap_servers().is_none() {
        return Err(Error::Config(
            "copy-offsets needs the app's broker: give --broker (FAUST_BROKER)".into(),
        ));
    }
    let broker = Broker::connect(app.config()).await?;
    let copied = consumer::copy_offsets(&broker, app.config(), from, &app.source_topics())?;
    for c in &copied {
        println!("{}[{}] at {}", c.topic, c.partition, c.offset);
    }
    println!(
        "group '{}' starts where '{from}' stopped ({} partitions)",
        app.config().group(),
        copied.len()
    );
    Ok(())
}

/// Runs a command inside a worker context with a producer connected to the configured
/// broker, when there is one (so that `send` works), and without tables.
async fn with_producer(
    app: &App,
    command: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    if app.config().bootstrap_servers().is_none() {
        return command.await;
    }
    let broker = Broker::connect(app.config()).await?;
    let producer = Producer::connect(
        &broker,
        &format!("{}-cli", app.config().id),
        app.config().producer_request_timeout,
        Sensors::new(Default::default(), app.sensors()),
    )?;
    let mut config = app.config().clone();
    // One reply topic for every run of the app's commands: a command run from cron
    // would otherwise leave a topic behind per run.
    if config.reply_to.is_none() {
        config.reply_to = Some(format!("f-reply-{}-cli", config.id));
    }
    let config = Arc::new(config);
    let worker = Arc::new(WorkerContext {
        channels: Default::default(),
        replies: ReplyTopic::kafka(broker.clone(), config.clone()),
        config,
        producer: producer.clone(),
        agents: app.agent_targets(),
        tables: None,
        clock: Clock::system(),
        leader: Leadership::default(),
    });
    let outcome = worker.scope(command).await;
    worker.replies.stop();
    let flushed = producer.flush(Duration::from_secs(30)).await;
    outcome.and(flushed)
}

fn print_agents(app: &App) {
    let mut out = std::io::stdout().lock();
    if app.registry().agents.is_empty() {
        let _ = writeln!(out, "no agents registered");
        return;
    }
    let _ = writeln!(
        out,
        "{:<24} {:<32} {:<24} {:>11}  codec",
        "agent", "topics", "sink", "concurrency"
    );
    for agent in &app.registry().agents {
        let _ = writeln!(
            out,
            "{:<24} {:<32} {:<24} {:>11}  {} ({})",
            agent.name,
            agent.source_topics(&app.config().id).join(","),
            if agent.sinks.is_empty() {
                "-".to_owned()
            } else {
                agent.sink_topics(&app.config().id).join(",")
            },
            agent.concurrency,
            agent.codec,
            agent.value_type,
        );
    }
}

fn print_tables(app: &App) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if app.registry().tables.is_empty() {
        let _ = writeln!(out, "no tables declared");
        return Ok(());
    }
    let dir = tables_dir(app.config());
    let _ = writeln!(
        out,
        "{:<20} {:<36} {:>10} {:>12} {:>10}  key -> value",
        "table", "changelog", "partitions", "local parts", "local keys"
    );
    for table in &app.registry().tables {
        let partitions = table.partitions_or(app.config().topic_partitions);
        let (mut held, mut keys) = (0, 0);
        if table.store != "memory" {
            for partition in 0..partitions {
                let path = dir.join(format!("{}-{partition}", table.name));
                if path.exists() {
                    held += 1;
                    keys += count_keys(&path)?;
                }
            }
        }
        let mut kind = match (table.global, table.store) {
            (true, _) => " (global)".to_owned(),
            (_, "memory") => " (memory)".to_owned(),
            _ => String::new(),
        };
        if let Some(window) = &table.window {
            kind.push_str(&format!(" ({})", window.describe()));
        }
        let _ = writeln!(
            out,
            "{:<20} {:<36} {:>10} {:>12} {:>10}  {} -> {}{kind}",
            table.name,
            table.changelog_topic(&app.config().id),
            partitions,
            held,
            keys,
            table.key_type,
            table.value_type,
        );
    }
    Ok(())
}

fn reset(app: &App, yes: bool) -> Result<()> {
    let dir = tables_dir(app.config());
    if !dir.exists() {
        println!("no local table state at {}", dir.display());
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Config(format!(
                "reset deletes {}; confirm with --yes",
                dir.display()
            )));
        }
        print!(
            "Delete all local table state under {}? [y/N] ",
            dir.display()
        );
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !answer.trim().eq_ignore_ascii_case("y") {
            println!("nothing deleted");
            return Ok(());
        }
    }
    // A running worker holds the lock: its stores are not deleted under it.
    let _lock = lock_datadir(app.config(), &app.registry().tables)?;
    std::fs::remove_dir_all(&dir).map_err(|e| Error::Io {
        context: format!("deleting {}", dir.display()),
        source: e,
    })?;
    println!(
        "deleted {}; the next worker rebuilds the tables from their changelogs",
        dir.display()
    );
    Ok(())
}

/// `--loglevel` on the command line wins; then `RUST_LOG`; then `FAUST_LOGLEVEL`; then info.
fn init_logging(matches: &ArgMatches) {
    let level = matches.get_one::<String>("loglevel").cloned();
    let from_flag = matches.value_source("loglevel") == Some(ValueSource::CommandLine);
    let filter = match (from_flag, std::env::var("RUST_LOG")) {
        (false, Ok(directives)) if !directives.is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(level.unwrap_or_else(|| "info".into())),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        command("app", "0.1.0", &Registry::default()).debug_assert();
    }

    #[test]
    fn send_checks_json_keys_and_values_and_reads_headers() {
        assert!(SendCodec::Json.check("--key", Some("42")).is_ok());
        assert!(SendCodec::Json.check("--key", Some("\"alice\"")).is_ok());
        let error = SendCodec::Json
            .check("--key", Some("alice"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--key is not JSON") && error.contains("'\"alice\"'"),
            "{error}"
        );
        assert!(SendCodec::Raw.check("the value", Some("anything")).is_ok());
        assert_eq!(
            parse_header("trace-id=a=b"),
            Ok(("trace-id".to_owned(), "a=b".to_owned()))
        );
        assert!(parse_header("=x").is_err() && parse_header("novalue").is_err());
    }

    #[test]
    fn flags_override_environment_override_code() {
        let code = App::builder("orders")
            .partitions(3)
            .commit_every(5)
            .config()
            .unwrap();
        let matches = command("app", "0", &Registry::default())
            .try_get_matches_from(["app", "worker", "--partitions", "6", "--id", "other"])
            .unwrap();
        let config = Settings::from_arg_matches(&matches).unwrap().apply(code);
        assert_eq!(config.topic_partitions, 6);
        assert_eq!(config.commit_every, 5);
        assert_eq!(config.id, "other");
        assert_eq!(config.datadir, PathBuf::from("other-data"));
    }

    #[test]
    fn security_flags_complete_what_the_code_set() {
        let code = App::builder("orders")
            .broker_sasl(Sasl::scram_sha_512("alice", "from-code"))
            .kafka("producer.compression.type=lz4")
            .config()
            .unwrap();
        let matches = command("app", "0", &Registry::default())
            .try_get_matches_from([
                "app",
                "worker",
                "--broker-ca",
                "ca.pem",
                "--broker-password",
                "from-flag",
                "--kafka",
                "consumer.fetch.max.bytes=1024",
            ])
            .unwrap();
        let config = Settings::from_arg_matches(&matches).unwrap().apply(code);
        let sasl = config.broker_sasl.unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(sasl.username, "alice");
        assert_eq!(sasl.password.expose(), "from-flag");
        assert_eq!(
            config.broker_tls.unwrap().ca_file,
            Some(PathBuf::from("ca.pem"))
        );
        let keys: Vec<&str> = config
            .kafka_settings
            .iter()
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(keys, ["compression.type", "fetch.max.bytes"]);
    }

    #[test]
    fn an_owned_kafka_property_is_refused_with_the_flag_to_use() {
        let err = command("app", "0", &Registry::default())
            .try_get_matches_from(["app", "worker", "--kafka", "group.id=x"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("the consumer group is the app id (--id), or --group-id"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_value_gets_one_clear_error() {
        let err = command("app", "0", &Registry::default())
            .try_get_matches_from(["app", "worker", "--broker", "kafka://host"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("has no port"), "{err}");
    }
}
