//! The worker's web server against the real broker: counters and lag after real
//! processing, Prometheus text checked by `promtool`, `/health` before and after the
//! worker has its partitions, table lookups across two workers (over HTTPS with client
//! certificates too), and the status page rendered by headless Chromium.

mod common;

use std::{
    collections::HashMap,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::{
    agent, all_committed, count_topics, http_get, partitions, produce_json, secured::Certificates,
    stats, unique, wait_until, words, Worker,
};
use serde_json::{json, Value};

const DONE: Duration = Duration::from_secs(60);

fn promtool_check(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: run scripts/install-deps.sh (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool rejected /metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // It also lints names (e.g. counters ending in _total): it must have nothing to say.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn counters_show_what_was_processed_and_lag_drops_to_zero() {
    needs_broker!();
    let app = unique("web-counters");
    let (input, _) = count_topics(&app);
    produce_json(&input, &words(6, 10));
    let mut worker = Worker::start(&app, "w", &[]);

    let settled = |stats: &Value| {
        let parts = partitions(stats, &input);
        agent(stats, "count")["events"] == 60
            && parts.len() == 4
            && parts
                .iter()
                .map(|p| p["messages_received"].as_u64().unwrap())
                .sum::<u64>()
                == 60
            && all_committed(&parts, 60)
    };
    assert!(
        wait_until(DONE, || settled(&stats(&worker))),
        "never settled: {}\n{}",
        stats(&worker),
        worker.log()
    );
    let stats = stats(&worker);
    let tables: HashMap<String, Value> = stats["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap().to_owned(), t.clone()))
        .collect();
    assert_eq!(tables["counts"]["writes"], 60, "{stats}");
    assert_eq!(tables["lengths"]["writes"], 60, "{stats}");
    assert_eq!(agent(&stats, "count")["event_duration"]["count"], 60);
    assert_eq!(stats["ready"], true);

    let url = worker.web_url();
    let metrics = http_get(&format!("{url}/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    promtool_check(&metrics.body);
    for line in [
        "faust_events_total{agent=\"count\"} 60".to_owned(),
        "faust_table_writes_total{table=\"counts\"} 60".to_owned(),
        "faust_worker_ready 1".to_owned(),
        format!("faust_consumer_lag{{topic=\"{input}\",partition=\"0\"}} 0"),
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "no line {line:?} in\n{}",
            metrics.body
        );
    }

    let assignment = http_get(&format!("{url}/assignment")).json();
    assert_eq!(assignment["topics"][&input], json!([0, 1, 2, 3]));
    assert_eq!(assignment["tables"]["counts"], json!([0, 1, 2, 3]));

    let found = http_get(&format!("{url}/tables/counts/w3"));
    assert_eq!((found.status, found.body.as_str()), (200, "10"));
    let quoted = http_get(&format!("{url}/tables/counts/%22w3%22"));
    assert_eq!((quoted.status, quoted.body.as_str()), (200, "10"));
    let missing = http_get(&format!("{url}/tables/counts/nope"));
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.json()["error"].as_str().unwrap().contains("no key"));
    let bad = http_get(&format!("{url}/tables/lengths/abc"));
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        bad.json()["error"].as_str().unwrap().contains("u64"),
        "{bad:?}"
    );
    assert_eq!(http_get(&format!("{url}/tables/nothing/x")).status, 404);
    worker.stop();
}

#[test]
fn only_declared_tables_are_served_and_a_token_guards_all_but_health_and_metrics() {
    needs_broker!();
    let app = unique("web-token");
    let (input, _) = count_topics(&app);
    produce_json(&input, &words(3, 2));
    let mut worker = Worker::start(&app, "w", &[("FAUST_WEB_TOKEN", "s3cret")]);
    let url = worker.web_url();
    let with = |path: &str, token: &str| {
        let bearer = format!("Bearer {token}");
        common::http_get_with(&format!("{url}{path}"), &[("Authorization", &bearer)])
    };
    assert!(
        wait_until(DONE, || with("/tables/counts/w2", "s3cret").body == "2"),
        "{}",
        worker.log()
    );

    // Probes and scrapers need no token; everything else does.
    assert_ne!(http_get(&format!("{url}/health")).status, 401);
    assert_eq!(http_get(&format!("{url}/metrics")).status, 200);
    for path in ["/", "/stats", "/assignment", "/tables/counts/w2"] {
        let refused = http_get(&format!("{url}{path}"));
        assert_eq!(refused.status, 401, "{path}: {refused:?}");
        assert_eq!(refused.headers["www-authenticate"], "Bearer");
        assert!(
            !refused.body.contains('2'),
            "{path} gave data away: {refused:?}"
        );
        assert_eq!(with(path, "wrong").status, 401, "{path}");
        assert_eq!(with(path, "s3cret").status, 200, "{path}");
    }

    // `sums` exists but is not declared with `web = true`: answered like a table that
    // does not exist.
    let hidden = with("/tables/sums/0", "s3cret");
    let absent = with("/tables/nothing/0", "s3cret");
    assert_eq!((hidden.status, absent.status), (404, 404));
    assert_eq!(
        hidden.body.replace("sums", "nothing"),
        absent.body,
        "the answers must not tell which table exists"
    );
    let long_key = "k".repeat(5000);
    assert_eq!(
        with(&format!("/tables/counts/{long_key}"), "s3cret").status,
        414
    );
    worker.stop();

    // A table listed in --web-tables is served too; a name that is no table stops the worker.
    let mut listed = Worker::start(&app, "w2", &[("FAUST_WEB_TABLES", "sums")]);
    let url = listed.web_url();
    assert!(
        wait_until(DONE, || {
            let answer = http_get(&format!("{url}/tables/sums/0"));
            answer.status != 503 && !answer.body.contains("served here")
        }),
        "{}",
        listed.log()
    );
    listed.stop();
    let mut wrong = Worker::start(&app, "w3", &[("FAUST_WEB_TABLES", "nothing")]);
    assert!(!wrong.wait_exit(DONE).success());
    assert!(
        wrong
            .log()
            .contains("name 'nothing', which is not a table of this app"),
        "{}",
        wrong.log()
    );
}

#[test]
fn health_is_unavailable_until_the_worker_has_recovered_its_partitions() {
    needs_broker!();
    let app = unique("web-health");
    let (input, _) = count_topics(&app);
    // The first worker takes 5 s over an event; a rebalance waits for it to finish, so
    // the second worker cannot get partitions (or be ready) before then.
    let slow = [("TEST_DELAY_MS", "5000")];
    let mut first = Worker::start(&app, "first", &slow);
    first.expect_log("worker ready", DONE);
    produce_json(&input, &words(1, 1));
    assert!(
        wait_until(DONE, || partitions(&stats(&first), &input)
            .iter()
            .any(|p| p["messages_received"] == 1)),
        "{}",
        first.log()
    );

    let mut second = Worker::start(&app, "second", &slow);
    let health = http_get(&format!("{}/health", second.web_url()));
    assert_eq!(health.status, 503, "{health:?}\n{}", second.log());
    let status = health.json()["status"].clone();
    assert!(status == "starting" || status == "recovering", "{health:?}");
    assert!(
        wait_until(DONE, || http_get(&format!("{}/health", second.web_url()))
            .status
            == 200),
        "{}",
        second.log()
    );
    assert_eq!(
        http_get(&format!("{}/health", second.web_url())).json(),
        json!({ "status": "ready", "ready": true })
    );
    second.expect_log("worker ready", Duration::from_secs(1));
    second.stop();
    first.stop();
}

#[test]
fn a_table_lookup_sent_to_the_wrong_worker_is_redirected_to_the_owner() {
    needs_broker!();
    let app = unique("web-lookup");
    let (input, _) = count_topics(&app);
    let mut a = Worker::start(&app, "a", &[]);
    let mut b = Worker::start(&app, "b", &[]);
    let (url_a, url_b) = (a.web_url(), b.web_url());
    // Both must hold some partitions, or no lookup would need a redirect.
    let holds = |url: &str| {
        http_get(&format!("{url}/assignment")).json()["tables"]["counts"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    };
    assert!(
        wait_until(DONE, || holds(&url_a) && holds(&url_b)),
        "the two workers never shared the partitions\n{}\n{}",
        a.log(),
        b.log()
    );
    produce_json(&input, &words(12, 3));

    // Every word, asked of either worker, answers 3: directly from its owner, through
    // a redirect from the other (once the other's announcement has arrived).
    let mut redirects = 0;
    let all_answered = wait_until(DONE, || {
        redirects = 0;
        (0..12).all(|i| {
            [&url_a, &url_b].iter().all(|url| {
                let first = http_get(&format!("{url}/tables/counts/w{i}"));
                let answer = match first.status {
                    307 => {
                        redirects += 1;
                        let location = &first.headers["location"];
                        let other = if *url == &url_a { &url_b } else { &url_a };
                        assert!(location.starts_with(other.as_str()), "{first:?}");
                        http_get(location)
                    }
                    _ => first,
                };
                answer.status == 200 && answer.body == "3"
            })
        })
    });
    assert!(
        all_answered,
        "lookups did not all answer 3\n{}\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(
        redirects, 12,
        "each word is held by exactly one of the two workers"
    );
    b.stop();
    a.stop();
}

/// `curl` over HTTPS trusting `ca`, with a client certificate when given: the status
/// code (0 when no HTTP answer came), the body and the redirect's target.
fn curl(url: &str, ca: &Path, client: Option<(&Path, &Path)>) -> (u16, String, String) {
    let mut command = Command::new("curl");
    command.args([
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code} %{redirect_url}",
        "--cacert",
    ]);
    command.arg(ca);
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let output = command
        .arg(url)
        .output()
        .expect("curl is missing: run scripts/install-deps.sh");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or_default();
    let (code, redirect) = last.split_once(' ').unwrap_or((last, ""));
    (
        code.parse().unwrap_or(0),
        body.to_owned(),
        redirect.to_owned(),
    )
}

#[test]
fn over_tls_with_a_client_ca_probes_pass_and_the_rest_wants_a_certificate() {
    needs_broker!();
    let certs = Certificates::make(&common::scratch().join(unique("web-certs")));
    let app = unique("web-tls");
    let (input, _) = count_topics(&app);
    let env = [
        ("FAUST_WEB_CERT", certs.server_cert.to_str().unwrap()),
        ("FAUST_WEB_KEY", certs.server_key.to_str().unwrap()),
        ("FAUST_WEB_CLIENT_CA", certs.ca.to_str().unwrap()),
    ];
    let mut a = Worker::start(&app, "a", &env);
    let mut b = Worker::start(&app, "b", &env);
    let (url_a, url_b) = (a.web_url(), b.web_url());
    assert!(url_a.starts_with("https://127.0.0.1:"), "{url_a}");
    let client = Some((certs.client_cert.as_path(), certs.client_key.as_path()));
    let get = |url: &str| curl(url, &certs.ca, client);
    let anonymous = |url: &str| curl(url, &certs.ca, None);

    // Probes and scrapers need no certificate; everything else does.
    assert!([200, 503].contains(&anonymous(&format!("{url_a}/health")).0));
    assert_eq!(anonymous(&format!("{url_a}/metrics")).0, 200);
    for path in ["/", "/stats", "/assignment", "/tables/counts/w0"] {
        let (code, body, _) = anonymous(&format!("{url_a}{path}"));
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("client certificate"), "{path}: {body}");
        // With it: answered (a lookup may say the table is not ready yet).
        let (code, body, _) = get(&format!("{url_a}{path}"));
        assert!(![0, 403].contains(&code), "{path}: {code} {body}");
    }
    // Plain HTTP gets no answer from the TLS port.
    let plain = url_a.replacen("https://", "http://", 1);
    assert_eq!(curl(&format!("{plain}/health"), &certs.ca, None).0, 0);

    // Lookups of keys the other worker holds are redirected to its https:// address,
    // where the certificate is wanted too.
    let holds = |url: &str| {
        let (_, body, _) = get(&format!("{url}/assignment"));
        let assignment: Value = serde_json::from_str(&body).unwrap_or_default();
        assignment["tables"]["counts"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    };
    assert!(
        wait_until(DONE, || holds(&url_a) && holds(&url_b)),
        "the two workers never shared the partitions\n{}\n{}",
        a.log(),
        b.log()
    );
    produce_json(&input, &words(12, 2));
    let mut redirects = 0;
    let all_answered = wait_until(DONE, || {
        redirects = 0;
        (0..12).all(|i| {
            let (code, body, location) = get(&format!("{url_a}/tables/counts/w{i}"));
            let (code, body) = match code {
                307 => {
                    redirects += 1;
                    assert!(location.starts_with(&url_b), "{location}");
                    assert_eq!(anonymous(&location).0, 403);
                    let (code, body, _) = get(&location);
                    (code, body)
                }
                _ => (code, body),
            };
            code == 200 && body == "2"
        })
    });
    assert!(all_answered, "{}\n{}", a.log(), b.log());
    assert!(redirects > 0, "worker b holds some words");
    b.stop();
    a.stop();
}

#[test]
fn the_status_page_shows_the_workers_agents_in_a_browser() {
    needs_broker!();
    let app = unique("web-page");
    let mut worker = Worker::start(&app, "w", &[]);
    worker.expect_log("worker ready", DONE);
    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            &format!("--user-data-dir={}", profile.display()),
            // Lets the page's scripts fetch /stats and render before the DOM is dumped.
            "--virtual-time-budget=10000",
            "--dump-dom",
            &format!("{}/", worker.web_url()),
        ])
        .output()
        .expect("chromium is missing: run scripts/install-deps.sh (Debian package chromium)");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The agents' rows are built by the page's script from /stats: none are in the HTML.
    for agent in ["count", "double", "track", "configure", "lookup"] {
        assert!(
            dom.contains(&format!("<tr><td>{agent}</td>")),
            "no row for agent {agent} in\n{dom}"
        );
    }
    assert!(dom.contains(&format!("faust-rs worker: {app}")), "{dom}");
    assert!(dom.contains("class=\"ready\">ready"), "{dom}");
    worker.stop();
}

#[test]
fn a_busy_web_port_is_a_clear_error_and_the_web_server_can_be_turned_off() {
    needs_broker!();
    let app = unique("web-port");
    let mut first = Worker::start(&app, "first", &[]);
    let url = first.web_url();
    let port = url.rsplit(':').next().unwrap().to_owned();
    let mut second = Worker::start(&app, "second", &[("FAUST_WEB_PORT", &port)]);
    let status = second.wait_exit(DONE);
    assert!(!status.success());
    let log = second.log();
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{port}")) && log.contains("--web-port"),
        "{log}"
    );

    let mut headless = Worker::start(&app, "headless", &[("FAUST_WITHOUT_WEB", "true")]);
    headless.expect_log("worker ready", DONE);
    assert!(!headless.log().contains("web server listening"));
    headless.stop();
    first.stop();
}
