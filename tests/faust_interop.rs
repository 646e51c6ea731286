//! Against a real Python Faust worker (faust-streaming 0.15.3, from bench/python's
//! virtualenv): what a faust-rs agent sends, a Python Faust agent reads, and the other
//! way round, with the same key bytes landing in the same partitions; and a Faust word
//! count taken over mid-stream by faust-rs (`copy-offsets` into a group of its own).

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use common::{
    broker, client, create_topic, create_topic_with, produce, produce_json, python_faust, read_all,
    scratch, unique, wait_until, Record, Worker,
};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    Offset, TopicPartitionList,
};
use serde_json::{json, Value};

/// Both workers start, join their groups and process a few records.
const DONE: Duration = Duration::from_secs(180);

#[test]
fn python_faust_reads_what_faust_rs_sends_and_faust_rs_reads_its_answers() {
    needs_broker!();
    let here = "python_faust_reads_what_faust_rs_sends_and_faust_rs_reads_its_answers";
    let Some(python) = python_faust(here) else {
        return;
    };
    let app = unique("interop");
    let (greet, to_python, from_python, answers) = (
        format!("{app}-greet"),
        format!("{app}-to-python"),
        format!("{app}-from-python"),
        format!("{app}-answers"),
    );
    // tansu creates no topic Python Faust declares: both apps' topics exist first.
    for topic in [&greet, &to_python, &from_python] {
        create_topic(topic, 4);
    }
    create_topic(&answers, 1);
    let names = ["alice", "bob", "café", "zoë", "dmitri", "ünal", "eve", "li"];
    let greetings: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let value = json!({ "name": name, "n": n });
            (
                Some(name.as_bytes().to_vec()),
                Some(serde_json::to_vec(&value).unwrap()),
            )
        })
        .collect();
    produce(&greet, &greetings);

    let mut rust = Worker::start(&app, "rust", &[]);
    let env = [
        ("INTEROP_TO_PYTHON", to_python.as_str()),
        ("INTEROP_FROM_PYTHON", from_python.as_str()),
    ];
    let mut faust = python_worker(python, "interop.py", &format!("{app}-py"), &env);

    let done = wait_until(DONE, || read_all(&answers).len() == names.len());
    assert!(
        done,
        "answers: {:?}\nfaust-rs:\n{}\nPython Faust:\n{}",
        read_all(&answers),
        rust.log(),
        faust.log()
    );
    faust.stop();
    rust.stop();
    assert!(!faust.log().contains("not a Greeting"), "{}", faust.log());

    // Python Faust decoded faust-rs's record as its Record class (by the namespace) and
    // answered it; faust-rs decoded the answer and counted it by its key.
    let answered: HashMap<String, Value> = read_all(&answers)
        .iter()
        .map(|r| (r.json()["key"].as_str().unwrap().to_owned(), r.json()))
        .collect();
    for (n, name) in names.iter().enumerate() {
        let answer = &answered[*name];
        assert_eq!(answer["name"], name.to_uppercase(), "{answer}");
        assert_eq!(answer["n"], n + 1, "{answer}");
        assert_eq!(answer["count"], 1, "{answer}");
    }
    // Each side wrote a name's key as the same bytes (raw UTF-8) and sent it to the same
    // partition, the one a Java client's murmur2 picked for the input.
    let placed = |records: Vec<Record>| -> HashMap<Vec<u8>, i32> {
        records
            .into_iter()
            .map(|r| (r.key.unwrap_or_default(), r.partition))
            .collect()
    };
    let (input, by_rust, by_python) = (
        placed(read_all(&greet)),
        placed(read_all(&to_python)),
        placed(read_all(&from_python)),
    );
    assert_eq!(by_rust, input, "faust-rs's keys and partitions");
    assert_eq!(by_python, input, "Python Faust's keys and partitions");
    // faust-rs's records carry the namespace Faust looks records up by.
    for record in read_all(&to_python) {
        assert_eq!(record.json()["__faust"]["ns"], "interop.Greeting");
    }
    // Python's answers are Records as Faust writes them.
    for record in read_all(&from_python) {
        assert_eq!(record.json()["__faust"]["ns"], "interop.Greeting");
    }
}

/// A Python Faust worker running `script` (in tests/python) as the app `app_id`.
fn python_worker(python: PathBuf, script: &str, app_id: &str, env: &[(&str, &str)]) -> Worker {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let datadir = scratch().join(unique("python-data"));
    let (broker, datadir) = (broker(), datadir.to_string_lossy().into_owned());
    let mut all = HashMap::from([
        ("INTEROP_APP", app_id),
        ("INTEROP_BROKER", broker.as_str()),
        ("INTEROP_DATADIR", datadir.as_str()),
    ]);
    all.extend(env.iter().copied());
    let script = script.to_string_lossy().into_owned();
    Worker::spawn(python, &[&script, "worker", "-l", "info"], &all, "python")
}

/// `faust-test-app copy-offsets --from {from}` for the app `app_id` in group `group`.
fn copy_offsets(app_id: &str, group: &str, from: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faust-test-app"))
        .args(["copy-offsets", "--from", from])
        .env("FAUST_ID", app_id)
        .env("FAUST_GROUP_ID", group)
        .env("FAUST_BROKER", broker())
        .env("FAUST_TOPIC_PARTITIONS", "4")
        .output()
        .unwrap()
}

/// The offsets `group` committed on `topic`'s four partitions (-1: none).
fn committed(group: &str, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = client().set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..4 {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..4)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

#[test]
fn copy_offsets_starts_the_apps_group_where_another_stopped_and_only_once() {
    needs_broker!();
    let app = unique("copy");
    let (input, counted) = (format!("{app}-count"), format!("{app}-counted"));
    create_topic(&input, 4);
    create_topic(&counted, 1);
    let words = [
        "one", "two", "three", "four", "five", "six", "seven", "eight",
    ];
    produce_json(&input, &words.map(|w| (json!(w), json!(w))));
    // Another group (Faust's, say) read all of these and committed.
    let faust_group = format!("{app}-faust");
    let records = read_all(&input);
    let ends: Vec<i64> = (0..4)
        .map(|p| records.iter().filter(|r| r.partition == p).count() as i64)
        .collect();
    let theirs: BaseConsumer = client().set("group.id", &faust_group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for (p, end) in ends.iter().enumerate() {
        list.add_partition_offset(&input, p as i32, Offset::Offset(*end))
            .unwrap();
    }
    theirs.commit(&list, CommitMode::Sync).unwrap();

    let group = format!("{app}-rs");
    let out = copy_offsets(&app, &group, &faust_group);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "group '{group}' starts where '{faust_group}' stopped"
        )),
        "{stdout}"
    );
    assert_eq!(committed(&group, &input), ends);
    // Once the group has offsets, a second copy would move it: refused.
    let again = copy_offsets(&app, &group, &faust_group);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("has committed offsets already"),
        "{stderr}"
    );
    // A group with no offsets (a misspelt name) is refused too.
    let none = copy_offsets(&app, &format!("{app}-other"), &format!("{app}-nobody"));
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(
        !none.status.success() && stderr.contains("has no committed offsets"),
        "{stderr}"
    );

    // The worker in that group processes only what came after.
    let later = ["nine", "ten"];
    produce_json(&input, &later.map(|w| (json!(w), json!(w))));
    let mut worker = Worker::start(&app, "w", &[("FAUST_GROUP_ID", &group)]);
    let done = wait_until(Duration::from_secs(120), || {
        read_all(&counted).len() >= later.len()
    });
    assert!(done, "{}", worker.log());
    worker.stop();
    let mut processed: Vec<String> = read_all(&counted)
        .iter()
        .map(|r| r.json()["word"].as_str().unwrap().to_owned())
        .collect();
    processed.sort();
    assert_eq!(
        processed,
        ["nine", "ten"],
        "only the records after the copied offsets"
    );
}

/// The latest count of each word in a word count's changelog.
fn counts_in(changelog: &str) -> BTreeMap<String, u64> {
    read_all(changelog)
        .into_iter()
        .filter_map(|r| {
            let word: String = serde_json::from_slice(r.key.as_deref()?).ok()?;
            Some((word, r.json().as_u64()?))
        })
        .collect()
}

#[test]
fn a_python_faust_word_count_is_taken_over_mid_stream_with_every_count_exact() {
    needs_broker!();
    let here = "a_python_faust_word_count_is_taken_over_mid_stream_with_every_count_exact";
    let Some(python) = python_faust(here) else {
        return;
    };
    let app = unique("takeover");
    let posts = format!("{app}-posts");
    let channel = format!("{app}-__main__.count_words");
    let changelog = format!("{app}-word_counts-changelog");
    // tansu creates no topic Python Faust declares.
    create_topic(&posts, 4);
    create_topic(&channel, 4);
    create_topic_with(&changelog, 4, &[("cleanup.policy", "compact")]);
    let vocabulary = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "café",
    ];
    let post = |i: usize| -> String {
        (0..1 + i % 7)
            .map(|j| vocabulary[(i * 3 + j * 5) % vocabulary.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let produce_posts = |range: std::ops::Range<usize>| {
        let records: Vec<_> = range
            .map(|i| (None, Some(serde_json::to_vec(&post(i)).unwrap())))
            .collect();
        produce(&posts, &records);
    };
    let expected = |range: std::ops::Range<usize>| {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for i in range {
            for word in post(i).split_whitespace() {
                *counts.entry(word.to_owned()).or_default() += 1;
            }
        }
        counts
    };

    // Python Faust counts the first half, and stops cleanly.
    produce_posts(0..60);
    let mut faust = python_worker(python, "word_count.py", &app, &[]);
    let done = wait_until(DONE, || counts_in(&changelog) == expected(0..60));
    assert!(done, "{:?}\n{}", counts_in(&changelog), faust.log());
    faust.stop();

    // faust-rs takes over in a group of its own, from Faust's offsets.
    produce_posts(60..120);
    let group = format!("{app}-rs");
    let out = copy_offsets(&app, &group, &app);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One record per batch, as the Python app: tansu 0.6.0 skips the rest of a batch when
    // a fetch starts inside it, which a back-pressure pause makes happen.
    let env = [
        ("FAUST_GROUP_ID", group.as_str()),
        ("FAUST_KAFKA_PRODUCER_BATCH_NUM_MESSAGES", "1"),
    ];
    let mut worker = Worker::start(&app, "rust", &env);
    let done = wait_until(DONE, || counts_in(&changelog) == expected(0..120));
    worker.stop();
    assert!(
        done,
        "counts {:?}\nexpected {:?}\n{}",
        counts_in(&changelog),
        expected(0..120),
        worker.log()
    );
}

#[test]
fn faust_rs_and_python_faust_agents_ask_each_other() {
    needs_broker!();
    let here = "faust_rs_and_python_faust_agents_ask_each_other";
    let Some(python) = python_faust(here) else {
        return;
    };
    let app = unique("rpc-interop");
    // Python's `mul`, faust-rs's `times100` (the test app's, on `{app_id}-times100`), and
    // Python's reply topic, which tansu would not create for Faust.
    let (py_mul, rs_agent, py_replies) = (
        format!("{app}-py-mul"),
        format!("{app}-times100"),
        format!("{app}-py-replies"),
    );
    create_topic(&py_mul, 4);
    create_topic(&rs_agent, 4);
    create_topic_with(&py_replies, 1, &[("cleanup.policy", "delete")]);

    let mut rust = Worker::start(&app, "rust", &[]);
    rust.expect_log("worker ready", DONE);
    let env = [
        ("RPC_PY_MUL", py_mul.as_str()),
        ("RPC_RS_AGENT", rs_agent.as_str()),
        ("RPC_PY_REPLY_TO", py_replies.as_str()),
    ];
    let mut faust = python_worker(python, "rpc.py", &format!("{app}-py"), &env);

    // Python Faust asks the faust-rs agent, with its reply headers and with the request
    // wrapped in its ReqRepRequest record; faust-rs answers both as Faust's reply record.
    faust.expect_log("PY GOT BY HEADERS: 250.0", DONE);
    faust.expect_log("PY GOT WRAPPED: 350.0", DONE);

    // faust-rs asks the Python Faust agent (a command of the test app).
    let asked = Command::new(env!("CARGO_BIN_EXE_faust-test-app"))
        .args(["ask", &py_mul, "4.5"])
        .env("FAUST_ID", &app)
        .env("FAUST_BROKER", broker())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&asked.stdout);
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(
        asked.status.success(),
        "{stdout}\n{stderr}\n{}",
        faust.log()
    );
    assert!(stdout.contains("reply: 450.0"), "{stdout}\n{stderr}");
    assert!(faust.log().contains("PY MUL ASKED: 4.5"), "{}", faust.log());
    faust.stop();
    rust.stop();
}
