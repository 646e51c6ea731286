//! Secured brokers, with certificates the test makes. [`TlsBroker`]: tansu 0.6.0 has no
//! TLS listener of its own, so stunnel (Debian's stunnel4) terminates TLS in front of it
//! and tansu advertises stunnel's port; with `mutual`, stunnel asks for a client
//! certificate signed by the test's CA. [`SaslBroker`]: nisshi 0.8.1, which checks SCRAM
//! credentials, over its own TLS listener too.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::MutexGuard,
    time::Duration,
};

use super::wait_until;

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signed, and a
/// second CA that signed neither.
pub struct Certificates {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certificates {
    pub fn make(dir: &Path) -> Certificates {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl runs (scripts/install-deps.sh installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for (name, subject) in [("ca", "/CN=faust-test-ca"), ("other-ca", "/CN=other-ca")] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        for (name, extensions) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN=faust-{name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        Certificates {
            ca: dir.join("ca.crt"),
            other_ca: dir.join("other-ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }
}

/// tansu behind stunnel; the helpers ([`super::client`]) reach it over TLS while it
/// lives, and the tests that use one run one at a time.
pub struct TlsBroker {
    pub address: String,
    children: Vec<Child>,
    _alone: MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn spawn(program: &Path, args: &[&str], dir: &Path, log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run scripts/install-deps.sh and scripts/broker.sh install",
                program.display()
            )
        })
}

fn listening(port: u16) -> bool {
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

impl TlsBroker {
    pub fn start(dir: &Path, certs: &Certificates, mutual: bool) -> TlsBroker {
        let alone = super::own_broker_turn();
        std::fs::create_dir_all(dir).unwrap();
        let (plain, tls) = (free_port(), free_port());
        let tansu = super::tansu_program();
        let broker = spawn(
            &tansu,
            &[
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{plain}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{tls}"),
                "--storage-engine",
                "memory://tansu/",
            ],
            dir,
            "broker.log",
        );
        let mut config = format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\n\
             cert = {}\nkey = {}\n",
            certs.server_cert.display(),
            certs.server_key.display()
        );
        if mutual {
            config += &format!(
                "CAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
                certs.ca.display()
            );
        }
        std::fs::write(dir.join("stunnel.conf"), config).unwrap();
        let stunnel = spawn(Path::new("stunnel4"), &["stunnel.conf"], dir, "stunnel.log");
        let secured = TlsBroker {
            address: format!("127.0.0.1:{tls}"),
            children: vec![broker, stunnel],
            _alone: alone,
        };
        assert!(
            listening(plain) && listening(tls),
            "the broker or stunnel did not start; see {}",
            dir.display()
        );
        let mut client = format!(
            "security.protocol=ssl;ssl.ca.location={}",
            certs.ca.display()
        );
        if mutual {
            client += &format!(
                ";ssl.certificate.location={};ssl.key.location={}",
                certs.client_cert.display(),
                certs.client_key.display()
            );
        }
        std::env::set_var("FAUST_TEST_BROKER", &secured.address);
        std::env::set_var("FAUST_TEST_CLIENT", client);
        secured
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        std::env::remove_var("FAUST_TEST_CLIENT");
        std::env::remove_var("FAUST_TEST_BROKER");
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nisshi 0.8.1 with SCRAM authentication (`--authentication`; its users live in
/// SQLite), in plain text or, given certificates, over its own TLS listener. The
/// helpers ([`super::client`]) log in as the first user while it lives.
pub struct SaslBroker {
    pub address: String,
    child: Child,
    _alone: MutexGuard<'static, ()>,
}

impl SaslBroker {
    /// Starts it in `dir` with `users` (name, password, `scram256` or `scram512`).
    pub fn start(dir: &Path, users: &[(&str, &str, &str)], tls: Option<&Certificates>) -> Self {
        let alone = super::own_broker_turn();
        std::fs::create_dir_all(dir).unwrap();
        let nisshi = super::nisshi_program();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // A path relative to the broker's directory: nisshi 0.8.1 takes an absolute one
        // (`sqlite:///dir/db`) as relative too.
        let storage = "sqlite://nisshi.db".to_owned();
        let broker_args = |authenticated: bool| {
            let mut args = vec![
                "broker".to_owned(),
                "--listener-url".into(),
                url.clone(),
                "--advertised-listener-url".into(),
                url.clone(),
                "--storage-engine".into(),
                storage.clone(),
            ];
            if authenticated {
                args.push("--authentication".into());
                if let Some(certs) = tls {
                    args.push("--cert".into());
                    args.push(certs.server_cert.display().to_string());
                    args.push("--key".into());
                    args.push(certs.server_key.display().to_string());
                }
            }
            args
        };
        // Users are made through the broker (AlterUserScramCredentials) before it asks
        // for them.
        let args = broker_args(false);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut open = spawn(&nisshi, &args, dir, "setup.log");
        assert!(
            listening(port),
            "nisshi did not start; see {}",
            dir.display()
        );
        for (name, password, mechanism) in users {
            let out = Command::new(&nisshi)
                .args(["user", "create", "--broker", &url, "--mechanism", mechanism])
                .args([name, password])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "creating user {name}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = open.kill();
        let _ = open.wait();
        let args = broker_args(true);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = spawn(&nisshi, &args, dir, "broker.log");
        let broker = SaslBroker {
            address: format!("127.0.0.1:{port}"),
            child,
            _alone: alone,
        };
        assert!(
            listening(port),
            "nisshi did not start; see {}",
            dir.display()
        );
        let (name, password, mechanism) = users[0];
        let mechanism = match mechanism {
            "scram256" => "SCRAM-SHA-256",
            _ => "SCRAM-SHA-512",
        };
        let mut client =
            format!("sasl.mechanism={mechanism};sasl.username={name};sasl.password={password}");
        client += &match tls {
            Some(certs) => format!(
                ";security.protocol=sasl_ssl;ssl.ca.location={}",
                certs.ca.display()
            ),
            None => ";security.protocol=sasl_plaintext".into(),
        };
        std::env::set_var("FAUST_TEST_BROKER", &broker.address);
        std::env::set_var("FAUST_TEST_CLIENT", client);
        broker
    }
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        std::env::remove_var("FAUST_TEST_CLIENT");
        std::env::remove_var("FAUST_TEST_BROKER");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
