//! A tansu broker of a test's own, with durable (SQLite) storage so that topics and
//! offsets survive its restart: for tests that stop and restart the broker.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::wait_until;

/// A tansu broker of this test's own, on its own port, storing in SQLite under `dir`
/// so that it keeps its topics and offsets across a restart.
pub struct DurableBroker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl DurableBroker {
    pub fn start(dir: PathBuf, port: u16) -> DurableBroker {
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = DurableBroker {
            dir,
            port,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn restart(&mut self) {
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
            // tansu takes the SQLite path relative to its working directory. A test may
            // ask for another engine (`FAUST_TEST_DURABLE_STORAGE=memory://tansu/`: not
            // durable, for runs without broker restarts).
            .args(["--storage-engine", &storage()])
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

    pub fn stop(&mut self) {
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

fn storage() -> String {
    std::env::var("FAUST_TEST_DURABLE_STORAGE").unwrap_or_else(|_| "sqlite://broker.db".into())
}

/// A durable broker on a free port, with the helpers pointed at it, for the calling test alone.
pub fn own_broker() -> (DurableBroker, String, std::sync::MutexGuard<'static, ()>) {
    let alone = super::own_broker_turn();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = super::scratch().join(super::unique("durable-broker"));
    let broker = DurableBroker::start(dir, port);
    let address = format!("127.0.0.1:{port}");
    // The helpers talk to this broker, not the shared one.
    std::env::set_var("FAUST_TEST_BROKER", &address);
    (broker, address, alone)
}
