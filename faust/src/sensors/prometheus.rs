//! The Prometheus text exposition format (version 0.0.4) of a [`Stats`] snapshot.

use std::fmt::Write as _;

use super::{Histogram, Stats};

/// Renders `stats` as Prometheus text, every metric with its HELP and TYPE lines.
pub fn render(stats: &Stats) -> String {
    let mut out = Exposition::default();
    out.metric(
        "faust_worker_ready",
        "gauge",
        "1 once the worker recovered its tables and takes events.",
    );
    out.sample("faust_worker_ready", &[], bool_value(stats.ready));
    out.metric(
        "faust_uptime_seconds",
        "gauge",
        "Seconds since the worker started.",
    );
    out.sample("faust_uptime_seconds", &[], stats.uptime_seconds);
    out.metric(
        "faust_rebalancing",
        "gauge",
        "1 while a consumer group rebalance is under way.",
    );
    out.sample("faust_rebalancing", &[], bool_value(stats.rebalancing));
    out.histogram(
        "faust_rebalance_duration_seconds",
        "Time from the start of a rebalance until this worker's new partitions were recovered.",
        &[(&[], &stats.rebalances)],
    );

    let partition_metrics: [(&str, &str, &str); 6] = [
        (
            "faust_messages_received_total",
            "counter",
            "Messages fetched, per source topic partition.",
        ),
        (
            "faust_partition_assigned",
            "gauge",
            "1 while this worker holds the partition.",
        ),
        (
            "faust_committed_offset",
            "gauge",
            "The group's committed offset (the next to read).",
        ),
        (
            "faust_high_watermark",
            "gauge",
            "One past the last offset of the partition, as last reported by the broker.",
        ),
        (
            "faust_consumer_lag",
            "gauge",
            "Messages not yet committed: high watermark minus committed offset.",
        ),
        (
            "faust_partition_stalled",
            "gauge",
            "1 while the partition has lag and its committed offset has not moved for the stall timeout.",
        ),
    ];
    for (i, (name, kind, help)) in partition_metrics.into_iter().enumerate() {
        out.metric(name, kind, help);
        for p in &stats.partitions {
            let partition = p.partition.to_string();
            let labels = [
                ("topic", p.topic.as_str()),
                ("partition", partition.as_str()),
            ];
            let value = match i {
                0 => Some(p.messages_received as f64),
                1 => Some(bool_value(p.assigned)),
                2 => p.committed_offset.map(|o| o as f64),
                3 => p.high_watermark.map(|o| o as f64),
                4 => p.lag.map(|o| o as f64),
                _ => Some(bool_value(p.stalled)),
            };
            if let Some(value) = value {
                out.sample(name, &labels, value);
            }
        }
    }

    let agent_counters: [(&str, &str); 3] = [
        ("faust_events_total", "Events processed, per agent."),
        (
            "faust_decode_errors_total",
            "Messages skipped because they could not be decoded, per agent.",
        ),
        (
            "faust_agent_errors_total",
            "Agent actor failures (errors and panics), per agent.",
        ),
    ];
    for (i, (name, help)) in agent_counters.into_iter().enumerate() {
        out.metric(name, "counter", help);
        for a in &stats.agents {
            let value = [a.events, a.decode_errors, a.errors][i];
            out.sample(name, &[("agent", &a.agent)], value as f64);
        }
    }
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

    out.metric(
        "faust_messages_sent_total",
        "counter",
        "Messages the broker acknowledged, per topic.",
    );
    for s in &stats.sends {
        out.sample(
            "faust_messages_sent_total",
            &[("topic", &s.topic)],
            s.messages as f64,
        );
    }
    out.metric(
        "faust_send_errors_total",
        "counter",
        "Messages the broker refused or that timed out, per topic.",
    );
    for s in &stats.sends {
        out.sample(
            "faust_send_errors_total",
            &[("topic", &s.topic)],
            s.errors as f64,
        );
    }
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
    out.metric(
        "faust_commit_errors_total",
        "counter",
        "Offset commits that failed (the next one retries).",
    );
    out.sample("faust_commit_errors_total", &[], stats.commit_errors as f64);

    let table_counters: [(&str, &str); 3] = [
        ("faust_table_reads_total", "Table reads, per table."),
        ("faust_table_writes_total", "Table writes, per table."),
        ("faust_table_deletes_total", "Table deletes, per table."),
    ];
    for (i, (name, help)) in table_counters.into_iter().enumerate() {
        out.metric(name, "counter", help);
        for t in &stats.tables {
            let value = [t.reads, t.writes, t.deletes][i];
            out.sample(name, &[("table", &t.table)], value as f64);
        }
    }
    let recovery_gauges: [(&str, &str); 3] = [
        (
            "faust_table_recovery_applied_records",
            "Changelog records applied by the latest recovery of a table partition.",
        ),
        (
            "faust_table_recovery_remaining_records",
            "Changelog records the recovery of a table partition has still to read.",
        ),
        (
            "faust_table_recovering",
            "1 while a table partition is being recovered.",
        ),
    ];
    for (i, (name, help)) in recovery_gauges.into_iter().enumerate() {
        out.metric(name, "gauge", help);
        for r in &stats.recovery {
            let partition = r.partition.to_string();
            let value = [
                r.records_applied as f64,
                r.records_remaining as f64,
                bool_value(!r.done),
            ][i];
            out.sample(
                name,
                &[("table", &r.table), ("partition", &partition)],
                value,
            );
        }
    }
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
