//! Workers on a broker reached over TLS (stunnel in front of tansu, certificates made
//! here): a worker given the CA processes; one that does not trust the broker, or that
//! lacks the client certificate a mutual-TLS listener asks for, stops at start with one
//! error naming the setting to fix. A test binary of its own: it points the helpers at
//! that broker.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{
    items, processed, produce_json, scratch,
    secured::{Certificates, TlsBroker},
    track_topics, unique, wait_until, Worker,
};

const DONE: Duration = Duration::from_secs(90);

fn certificates() -> (PathBuf, Certificates) {
    let dir = scratch().join(unique("tls"));
    let certs = Certificates::make(&dir.join("certs"));
    (dir, certs)
}

/// Starts a worker of `track` with `env` and checks it processes 20 items over TLS.
fn processes_over_tls(broker: &TlsBroker, env: &[(&str, &str)]) {
    let app = unique("tls");
    let (input, out) = track_topics(&app);
    let mut all = vec![("FAUST_BROKER", broker.address.as_str())];
    all.extend_from_slice(env);
    let mut worker = Worker::start(&app, "w", &all);
    produce_json(&input, &items(0..20));
    let done = wait_until(DONE, || processed(&out).len() == 20);
    worker.stop();
    assert!(done, "not processed over TLS:\n{}", worker.log());
}

/// Starts a worker with `env` that the broker must turn away: it exits within seconds
/// with one error containing `needles`.
fn refused(broker: &TlsBroker, env: &[(&str, &str)], needles: &[&str]) {
    let mut all = vec![("FAUST_BROKER", broker.address.as_str())];
    all.extend_from_slice(env);
    let mut worker = Worker::start(&unique("tls-refused"), "w", &all);
    let status = worker.wait_exit(Duration::from_secs(30));
    let log = worker.log();
    assert!(!status.success(), "the worker ran on:\n{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused this worker"))
        .collect();
    assert_eq!(errors.len(), 1, "one error, not a retry loop:\n{log}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "'{needle}' missing from: {}",
            errors[0]
        );
    }
}

#[test]
fn a_worker_given_the_ca_processes_over_tls_and_one_that_does_not_trust_the_broker_stops() {
    needs_broker!();
    let (dir, certs) = certificates();
    let broker = TlsBroker::start(&dir.join("broker"), &certs, false);
    let ca = certs.ca.to_string_lossy();
    processes_over_tls(&broker, &[("FAUST_BROKER_CA", &ca)]);

    let other = certs.other_ca.to_string_lossy();
    refused(
        &broker,
        &[("FAUST_BROKER_CA", &other)],
        &["not trusted", "--broker-ca"],
    );
    // The system's CAs do not know the test's CA either.
    refused(
        &broker,
        &[("FAUST_BROKER_TLS", "true")],
        &["not trusted", "--broker-ca"],
    );
}

#[test]
fn a_mutual_tls_listener_takes_the_worker_with_its_client_certificate_only() {
    needs_broker!();
    let (dir, certs) = certificates();
    let broker = TlsBroker::start(&dir.join("broker"), &certs, true);
    let ca = certs.ca.to_string_lossy();
    let (cert, key) = (
        certs.client_cert.to_string_lossy(),
        certs.client_key.to_string_lossy(),
    );
    processes_over_tls(
        &broker,
        &[
            ("FAUST_BROKER_CA", &ca),
            ("FAUST_BROKER_CERT", &cert),
            ("FAUST_BROKER_KEY", &key),
        ],
    );
    refused(&broker, &[("FAUST_BROKER_CA", &ca)], &["--broker-cert"]);
}
