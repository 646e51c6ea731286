//! The real ceiling: the best raw produce and consume rates rdkafka reaches on the
//! broker, over a few client settings (batching, fetch sizes and waits, compression),
//! with no framework and no processing. The first setting of each list is the worker's.

use super::*;

/// Producer settings tried, on top of `bootstrap.servers` and the murmur2 partitioner.
const PRODUCE: &[&[(&str, &str)]] = &[
    &[("linger.ms", "5"), ("enable.idempotence", "true")],
    &[("linger.ms", "5")],
    &[("linger.ms", "20")],
    &[
        ("linger.ms", "20"),
        ("batch.num.messages", "100000"),
        ("batch.size", "4000000"),
    ],
    &[("linger.ms", "20"), ("compression.type", "lz4")],
];

/// Consumer settings tried, on top of `bootstrap.servers`.
const CONSUME: &[&[(&str, &str)]] = &[
    &[("fetch.wait.max.ms", "100")],
    &[("fetch.wait.max.ms", "5")],
    &[
        ("fetch.wait.max.ms", "5"),
        ("max.partition.fetch.bytes", "10485760"),
        ("fetch.max.bytes", "104857600"),
    ],
    &[
        ("fetch.wait.max.ms", "5"),
        ("queued.min.messages", "1000000"),
        ("max.partition.fetch.bytes", "10485760"),
    ],
    &[
        ("fetch.wait.max.ms", "100"),
        ("queued.min.messages", "1000000"),
        ("max.partition.fetch.bytes", "10485760"),
    ],
];

impl Bench {
    pub(crate) fn ceiling(&mut self) -> Result<Value> {
        let n = self.messages;
        let value = json!({"id": 0, "sent_us": 0, "text": "lorem ipsum dolor sit amet, consectetur adipiscing elit sed do"})
            .to_string()
            .into_bytes();
        let mut produced = Vec::new();
        let mut first_topic = None;
        for settings in PRODUCE {
            let topic = self.unique("ceiling");
            self.ensure_topics(&[&topic])?;
            let producer: ThreadedProducer<DefaultProducerContext> =
                client_config(&self.broker, settings)
                    .set("queue.buffering.max.messages", "1000000")
                    .create()
                    .map_err(|e| e.to_string())?;
            let started = Instant::now();
            for i in 0..n {
                send(&producer, &topic, Some(&i.to_string()), &value);
            }
            producer
                .flush(Duration::from_secs(300))
                .map_err(|e| e.to_string())?;
            let rate = n as f64 / started.elapsed().as_secs_f64();
            produced
                .push(json!({"settings": settings_json(settings), "records_per_s": rate.round()}));
            first_topic.get_or_insert(topic);
        }
        let topic = first_topic.ok_or("no producer settings")?;
        let mut consumed = Vec::new();
        for settings in CONSUME {
            let consumer: BaseConsumer = client_config(&self.broker, settings)
                .set("group.id", self.unique("ceiling-reader"))
                .set("enable.partition.eof", "true")
                .set("enable.auto.commit", "false")
                .create()
                .map_err(|e| e.to_string())?;
            let rate = read_to_end(&consumer, &topic, n)?;
            consumed
                .push(json!({"settings": settings_json(settings), "records_per_s": rate.round()}));
        }
        let best = |rows: &[Value]| {
            rows.iter()
                .max_by(|a, b| {
                    let rate = |v: &Value| v["records_per_s"].as_f64().unwrap_or(0.0);
                    rate(a).total_cmp(&rate(b))
                })
                .cloned()
        };
        Ok(json!({
            "scenario": "ceiling", "broker": self.broker_name(), "records": n, "value_bytes": value.len(),
            "produce": produced, "consume": consumed,
            "best_produce": best(&produced), "best_consume": best(&consumed),
        }))
    }
}

/// A client of `broker` with the murmur2 partitioner and `settings`.
fn client_config(broker: &str, settings: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("partitioner", "murmur2_random");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
}

fn settings_json(settings: &[(&str, &str)]) -> Value {
    Value::Object(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect(),
    )
}
