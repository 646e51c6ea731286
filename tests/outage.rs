//! A broker that goes away for 15 s while a worker processes: a tansu of this test's
//! own, with durable (SQLite) storage so that topics and offsets survive its restart.
//! A test binary of its own, because it points the helpers at that broker.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{items, processed, produce_json, track_topics, unique, wait_until, Worker};

const DONE: Duration = Duration::from_secs(90);

/// A tansu broker of this test's own, on its own port, storing in SQLite under `dir`
/// so that it keeps its topics and offsets across a restart.
struct DurableBroker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl DurableBroker {
    fn start(dir: PathBuf, port: u16) -> DurableBroker {
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = DurableBroker {
            dir,
            port,
            child: None,
        };
        broker.restart();
        broker
    }

    fn restart(&mut self) {
        let tansu = std::env::var("FAUST_TEST_TANSU").map_or_else(
            |_| {
                PathBuf::from(std::env::var("HOME").unwrap())
                    .join(".cache/faust-rs/tansu-0.6.0/bin/tansu")
            },
            PathBuf::from,
        );
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("broker.log")).unwrap();
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // tansu takes the SQLite path relative to its working directory.
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/broker.sh install",
                    tansu.display()
                )
            });
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(up, "the durable broker did not open port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn the_worker_rides_out_a_broker_outage_and_loses_nothing() {
    needs_broker!();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = common::scratch().join(unique("durable-broker"));
    let mut broker = DurableBroker::start(dir, port);
    let address = format!("127.0.0.1:{port}");
    // The helpers talk to this broker, not the shared one.
    std::env::set_var("FAUST_TEST_BROKER", &address);

    let app = unique("outage");
    let (input, out) = track_topics(&app);
    let env = [("FAUST_BROKER", address.as_str()), ("TEST_DELAY_MS", "20")];
    let mut worker = Worker::start(&app, "w", &env);
    worker.expect_log("worker ready", DONE);
    produce_json(&input, &items(0..200));
    assert!(
        wait_until(DONE, || !processed(&out).is_empty()),
        "{}",
        worker.log()
    );

    broker.stop();
    let down = Instant::now();
    // While it is down the worker notices it (once) and keeps trying.
    worker.expect_log("retrying; repeats of this are logged at debug level", DONE);
    std::thread::sleep(Duration::from_secs(15).saturating_sub(down.elapsed()));
    broker.restart();

    worker.expect_log("the broker is reachable again", DONE);
    produce_json(&input, &items(200..300));
    let all = wait_until(Duration::from_secs(180), || processed(&out).len() == 300);
    assert!(
        all,
        "not everything was processed after the outage:\n{}",
        worker.log()
    );
    worker.stop();

    let log = worker.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("Kafka"))
        .count();
    assert!(
        warnings <= 3,
        "the outage is logged once, not flooded ({warnings} warnings):\n{log}"
    );
    let seen = processed(&out);
    let missing: Vec<u64> = (0..300).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
}
