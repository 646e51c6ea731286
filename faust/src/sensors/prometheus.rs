//! The Prometheus text exposition format (version 0.0.4) of a [`Stats`] snapshot.

use std::fmt::Write as _;

use super::{
    AgentStats, Histogram, PartitionStats, RecoveryStats, SendStats, StandbyStats, Stats,
    TableStats,
};

/// One metric family: its name, type and help, and how each row gives its value
/// (`None`: no sample for that row).
struct Family<T> {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&T) -> Option<f64>,
}

const fn family<T>(
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&T) -> Option<f64>,
) -> Family<T> {
    Family {
        name,
        kind,
        help,
        value,
    }
}

const WORKER: &[Family<Stats>] = &[
    family(
        "faust_worker_ready",
        "gauge",
        "1 once the worker recovered its tables and takes events.",
        |s| Some(bool_value(s.ready)),
    ),
    family(
        "faust_uptime_seconds",
        "gauge",
        "Seconds since the worker started.",
        |s| Some(s.uptime_seconds),
    ),
    family(
        "faust_rebalancing",
        "gauge",
        "1 while a consumer group rebalance is under way.",
        |s| Some(bool_value(s.rebalancing)),
    ),
];

const PARTITIONS: &[Family<PartitionStats>] = &[
    family(
        "faust_messages_received_total",
        "counter",
        "Messages fetched, per source topic partition.",
        |p| Some(p.messages_received as f64),
    ),
    family(
        "faust_partition_assigned",
        "gauge",
        "1 while this worker holds the partition.",
        |p| Some(bool_value(p.assigned)),
    ),
    family(
        "faust_committed_offset",
        "gauge",
        "The group's committed offset (the next to read).",
        |p| p.committed_offset.map(|o| o as f64),
    ),
    family(
        "faust_high_watermark",
        "gauge",
        "One past the last offset of the partition, as last reported by the broker.",
        |p| p.high_watermark.map(|o| o as f64),
    ),
    family(
        "faust_consumer_lag",
        "gauge",
        "Messages not yet committed: high watermark minus committed offset.",
        |p| p.lag.map(|o| o as f64),
    ),
    family(
        "faust_partition_stalled",
        "gauge",
        "1 while the partition has lag and its committed offset has not moved for the stall timeout.",
        |p| Some(bool_value(p.stalled)),
    ),
];

const AGENTS: &[Family<AgentStats>] = &[
    family(
        "faust_events_total",
        "counter",
        "Events processed, per agent.",
        |a| Some(a.events as f64),
    ),
    family(
        "faust_decode_errors_total",
        "counter",
        "Messages skipped because they could not be decoded, per agent.",
        |a| Some(a.decode_errors as f64),
    ),
    family(
        "faust_repeats_skipped_total",
        "counter",
        "Messages skipped as repeats of records the agent already applied (a sender ran an event again after a crash), per agent.",
        |a| Some(a.repeats_skipped as f64),
    ),
    family(
        "faust_agent_errors_total",
        "counter",
        "Agent actor failures (errors and panics), per agent.",
        |a| Some(a.errors as f64),
    ),
];

const SENDS: &[Family<SendStats>] = &[
    family(
        "faust_messages_sent_total",
        "counter",
        "Messages the broker acknowledged, per topic.",
        |s| Some(s.messages as f64),
    ),
    family(
        "faust_send_errors_total",
        "counter",
        "Messages the broker refused or that timed out, per topic.",
        |s| Some(s.errors as f64),
    ),
];

const COMMITS: &[Family<Stats>] = &[family(
    "faust_commit_errors_total",
    "counter",
    "Offset commits that failed (the next one retries).",
    |s| Some(s.commit_errors as f64),
)];

const TABLES: &[Family<TableStats>] = &[
    family(
        "faust_table_reads_total",
        "counter",
        "Table reads, per table.",
        |t| Some(t.reads as f64),
    ),
    family(
        "faust_table_writes_total",
        "counter",
        "Table writes, per table.",
        |t| Some(t.writes as f64),
    ),
    family(
        "faust_table_deletes_total",
        "counter",
        "Table deletes, per table.",
        |t| Some(t.deletes as f64),
    ),
];

const STANDBYS: &[Family<StandbyStats>] = &[
    family(
        "faust_table_standby_offset",
        "gauge",
        "The next changelog offset a standby replica of a table partition applies.",
        |s| Some(s.offset as f64),
    ),
    family(
        "faust_table_standby_lag",
        "gauge",
        "Changelog records a standby replica of a table partition has not applied yet.",
        |s| Some(s.lag as f64),
    ),
];

const RECOVERY: &[Family<RecoveryStats>] = &[
    family(
        "faust_table_recovery_applied_records",
        "gauge",
        "Changelog records applied by the latest recovery of a table partition.",
        |r| Some(r.records_applied as f64),
    ),
    family(
        "faust_table_recovery_remaining_records",
        "gauge",
        "Changelog records the recovery of a table partition has still to read.",
        |r| Some(r.records_remaining as f64),
    ),
    family(
        "faust_table_recovering",
        "gauge",
        "1 while a table partition is being recovered.",
        |r| Some(bool_value(!r.done)),
    ),
];

/// Renders `stats` as Prometheus text, every metric with its HELP and TYPE lines.
pub fn render(stats: &Stats) -> String {
    let mut out = Exposition::default();
    out.families(WORKER, std::slice::from_ref(stats), |_| Vec::new());
    out.histogram(
        "faust_rebalance_duration_seconds",
        "Time from the start of a rebalance until this worker's new partitions were recovered.",
        &[(&[], &stats.rebalances)],
    );
    out.families(PARTITIONS, &stats.partitions, |p| {
        vec![
            ("topic", p.topic.clone()),
            ("partition", p.partition.to_string()),
        ]
    });
    out.families(AGENTS, &stats.agents, |a| vec![("agent", a.agent.clone())]);
    let durations: Vec<_> = stats
        .agents
        .iter()
        .map(|a| ([("agent", a.agent.as_str())], &a.event_duration))
        .collect();
    let durations: Vec<(&[(&str, &str)], &Histogram)> =
        durations.iter().map(|(l, h)| (&l[..], *h)).collect();
    out.histogram(
        "faust_event_duration_seconds",
        "Time an agent spent on one event.",
        &durations,
    );
    out.families(SENDS, &stats.sends, |s| vec![("topic", s.topic.clone())]);
    out.histogram(
        "faust_send_latency_seconds",
        "Time from handing a message to the producer until the broker acknowledged it.",
        &[(&[], &stats.send_latency)],
    );
    out.histogram(
        "faust_commit_latency_seconds",
        "Time to flush table changes and commit offsets.",
        &[(&[], &stats.commit_latency)],
    );
    out.families(COMMITS, std::slice::from_ref(stats), |_| Vec::new());
    out.families(TABLES, &stats.tables, |t| vec![("table", t.table.clone())]);
    out.families(RECOVERY, &stats.recovery, |r| {
        vec![
            ("table", r.table.clone()),
            ("partition", r.partition.to_string()),
        ]
    });
    out.families(STANDBYS, &stats.standbys, |s| {
        vec![
            ("table", s.table.clone()),
            ("partition", s.partition.to_string()),
        ]
    });
    out.text
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// Each family in turn: its HELP and TYPE, then a sample per row.
    fn families<T>(
        &mut self,
        families: &[Family<T>],
        rows: &[T],
        labels: impl Fn(&T) -> Vec<(&'static str, String)>,
    ) {
        for family in families {
            self.metric(family.name, family.kind, family.help);
            for row in rows {
                if let Some(value) = (family.value)(row) {
                    let labels = labels(row);
                    let labels: Vec<(&str, &str)> =
                        labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    self.sample(family.name, &labels, value);
                }
            }
        }
    }

    fn metric(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn histogram(&mut self, name: &str, help: &str, series: &[(&[(&str, &str)], &Histogram)]) {
        self.metric(name, "histogram", help);
        for (labels, histogram) in series {
            let bucket = format!("{name}_bucket");
            for (bound, count) in histogram.cumulative() {
                let le = bound.to_string();
                let mut with_le = labels.to_vec();
                with_le.push(("le", &le));
                self.sample(&bucket, &with_le, count as f64);
            }
            let mut with_le = labels.to_vec();
            with_le.push(("le", "+Inf"));
            self.sample(&bucket, &with_le, histogram.count as f64);
            self.sample(&format!("{name}_sum"), labels, histogram.sum_seconds);
            self.sample(&format!("{name}_count"), labels, histogram.count as f64);
        }
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::{Monitor, Sensor};

    #[test]
    fn renders_labels_and_histograms() {
        let monitor = Monitor::default();
        monitor.register(["count"], ["words"]);
        monitor.assigned([("we\"ird".to_owned(), 3, 10)]);
        monitor.message_in("we\"ird", 3, 10);
        monitor.high_watermark("we\"ird", 3, 15);
        monitor.event_end("count", std::time::Duration::from_millis(2));
        let text = render(&monitor.stats());
        assert!(
            text.contains("faust_messages_received_total{topic=\"we\\\"ird\",partition=\"3\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("faust_consumer_lag{topic=\"we\\\"ird\",partition=\"3\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("faust_event_duration_seconds_bucket{agent=\"count\",le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("faust_event_duration_seconds_count{agent=\"count\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("faust_table_reads_total{table=\"words\"} 0\n"),
            "{text}"
        );
    }
}
