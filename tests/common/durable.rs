//! A broker of a test's own: tansu with durable (SQLite) storage, so that topics and
//! offsets survive its restart, for tests that stop and restart the broker; or another
//! program and engine ([`Engine`]).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::wait_until;

/// Which broker program, on which storage engine.
#[derive(Clone)]
pub struct Engine {
    pub program: PathBuf,
    pub storage: String,
    /// Settings the workers need on this broker.
    pub worker_env: &'static [(&'static str, &'static str)],
}

impl Engine {
    /// tansu 0.6.0 on SQLite (or `FAUST_TEST_TANSU`, `FAUST_TEST_DURABLE_STORAGE`).
    pub fn durable() -> Engine {
        // tansu takes the SQLite path relative to its working directory.
        let storage = std::env::var("FAUST_TEST_DURABLE_STORAGE")
            .unwrap_or_else(|_| "sqlite://broker.db".into());
        Engine {
            program: super::tansu_program(),
            storage,
            worker_env: &[],
        }
    }

    /// nisshi 0.8.1 in memory (or `FAUST_TEST_NISSHI`): not durable, so no restarts.
    pub fn nisshi_in_memory() -> Engine {
        Engine {
            program: super::nisshi_program(),
            storage: "memory://nisshi/".into(),
            // The worker's 10 ms fetch wait reads nothing from a long partition of small
            // batches here (super::NISSHI_FETCH_WAIT); the README tells users the same.
            worker_env: &[(
                "FAUST_KAFKA_CONSUMER_FETCH_WAIT_MAX_MS",
                super::NISSHI_FETCH_WAIT,
            )],
        }
    }
}

/// A broker of this test's own, on its own port, under `dir`.
pub struct OwnBroker {
    dir: PathBuf,
    port: u16,
    engine: Engine,
    child: Option<Child>,
}

impl OwnBroker {
    pub fn start(dir: PathBuf, port: u16, engine: Engine) -> OwnBroker {
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = OwnBroker {
            dir,
            port,
            engine,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("broker.log")).unwrap();
        let program = &self.engine.program;
        let child = Command::new(program)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.engine.storage])
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/broker.sh install",
                    program.display()
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

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A durable broker ([`Engine::durable`]) on a free port, with the helpers pointed at it,
/// for the calling test alone.
pub fn own_broker() -> (OwnBroker, String, std::sync::MutexGuard<'static, ()>) {
    own_broker_on(Engine::durable())
}

/// [`own_broker`] of the given program and engine.
pub fn own_broker_on(engine: Engine) -> (OwnBroker, String, std::sync::MutexGuard<'static, ()>) {
    let alone = super::own_broker_turn();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = super::scratch().join(super::unique("durable-broker"));
    let broker = OwnBroker::start(dir, port, engine);
    let address = format!("127.0.0.1:{port}");
    // The helpers talk to this broker, not the shared one.
    std::env::set_var("FAUST_TEST_BROKER", &address);
    (broker, address, alone)
}
