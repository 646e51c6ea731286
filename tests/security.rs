//! Workers on a broker reached over TLS (stunnel in front of tansu, certificates made
//! here) or with SASL (nisshi, which checks SCRAM credentials): a worker given the CA
//! or its credentials processes; one that does not trust the broker, lacks the client
//! certificate a mutual-TLS listener asks for, or gives a wrong password, stops at start
//! with one error naming the setting to fix. A test binary of its own: it points the
//! helpers at that broker.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{
    items, processed, produce_json, scratch,
    secured::{Certificates, SaslBroker, TlsBroker},
    track_topics, unique, wait_until, Worker,
};

const DONE: Duration = Duration::from_secs(90);

fn certificates() -> (PathBuf, Certificates) {
    let dir = scratch().join(unique("tls"));
    let certs = Certificates::make(&dir.join("certs"));
    (dir, certs)
}

/// Starts a worker of `track` with `env` and checks it processes 20 items on the
/// secured broker at `address`.
fn processes(address: &str, env: &[(&str, &str)]) {
    let app = unique("secured");
    let (input, out) = track_topics(&app);
    let mut all = vec![("FAUST_BROKER", address)];
    all.extend_from_slice(env);
    let mut worker = Worker::start(&app, "w", &all);
    produce_json(&input, &items(0..20));
    let done = wait_until(DONE, || processed(&out).len() == 20);
    worker.stop();
    assert!(done, "not processed:\n{}", worker.log());
}

/// Starts a worker with `env` that the broker must turn away: it exits within seconds
/// with one error containing `needles`.
fn refused(address: &str, env: &[(&str, &str)], needles: &[&str]) {
    let mut all = vec![("FAUST_BROKER", address)];
    all.extend_from_slice(env);
    let mut worker = Worker::start(&unique("refused"), "w", &all);
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
    processes(&broker.address, &[("FAUST_BROKER_CA", &ca)]);

    let other = certs.other_ca.to_string_lossy();
    refused(
        &broker.address,
        &[("FAUST_BROKER_CA", &other)],
        &["not trusted", "--broker-ca"],
    );
    // The system's CAs do not know the test's CA either.
    refused(
        &broker.address,
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
    processes(
        &broker.address,
        &[
            ("FAUST_BROKER_CA", &ca),
            ("FAUST_BROKER_CERT", &cert),
            ("FAUST_BROKER_KEY", &key),
        ],
    );
    refused(
        &broker.address,
        &[("FAUST_BROKER_CA", &ca)],
        &["--broker-cert"],
    );
}

#[test]
fn a_worker_logs_in_with_scram_and_one_with_a_wrong_password_stops() {
    needs_broker!();
    let dir = scratch().join(unique("sasl"));
    let users = [
        ("alice", "wonderland", "scram512"),
        ("bob", "builder", "scram256"),
    ];
    let broker = SaslBroker::start(&dir, &users, None);
    let alice = [
        ("FAUST_BROKER_SASL", "SCRAM-SHA-512"),
        ("FAUST_BROKER_USERNAME", "alice"),
        ("FAUST_BROKER_PASSWORD", "wonderland"),
    ];
    processes(&broker.address, &alice);
    let bob = [
        ("FAUST_BROKER_SASL", "SCRAM-SHA-256"),
        ("FAUST_BROKER_USERNAME", "bob"),
        ("FAUST_BROKER_PASSWORD", "builder"),
    ];
    processes(&broker.address, &bob);

    let fix = ["check the SASL user name and password", "--broker-username"];
    let wrong = [
        ("FAUST_BROKER_SASL", "SCRAM-SHA-512"),
        ("FAUST_BROKER_USERNAME", "alice"),
        ("FAUST_BROKER_PASSWORD", "looking-glass"),
    ];
    refused(&broker.address, &wrong, &fix);
    let stranger = [
        ("FAUST_BROKER_SASL", "SCRAM-SHA-512"),
        ("FAUST_BROKER_USERNAME", "mallory"),
        ("FAUST_BROKER_PASSWORD", "wonderland"),
    ];
    refused(&broker.address, &stranger, &fix);
    // No credentials at all: the broker closes the connection unanswered.
    refused(
        &broker.address,
        &[],
        &["accepts connections", "--broker-sasl"],
    );
}

#[test]
fn a_worker_logs_in_with_scram_over_tls() {
    needs_broker!();
    let (dir, certs) = certificates();
    let users = [("alice", "wonderland", "scram512")];
    let broker = SaslBroker::start(&dir.join("broker"), &users, Some(&certs));
    let ca = certs.ca.to_string_lossy();
    let alice = [
        ("FAUST_BROKER_CA", &*ca),
        ("FAUST_BROKER_SASL", "SCRAM-SHA-512"),
        ("FAUST_BROKER_USERNAME", "alice"),
        ("FAUST_BROKER_PASSWORD", "wonderland"),
    ];
    processes(&broker.address, &alice);
    // The credentials alone, without TLS: the listener speaks only TLS.
    refused(&broker.address, &alice[1..], &["--broker-tls"]);
}
