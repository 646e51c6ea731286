//! Windowed tables against the real broker: Faust's withdrawals example, with event time
//! from the message timestamp and from a field of the value, late events inside and
//! outside the expiry, hopping windows, and windows closing on time after an idle period.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{
    create_topic, datadir, produce_json_at, produce_to, read_all, unique, wait_until, Worker,
};
use serde_json::{json, Value};

const DONE: Duration = Duration::from_secs(120);
const HOUR: i64 = 3_600_000;
const SECOND: i64 = 1_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn withdrawal(user: &str, country: &str, amount: i64, date: i64) -> Value {
    json!({ "user": user, "country": country, "amount": amount, "date": date })
}

fn reports(topic: &str) -> Vec<Value> {
    read_all(topic).iter().map(|r| r.json()).collect()
}

#[test]
fn withdrawals_are_totalled_per_user_hour_and_per_country_window_with_expiry() {
    needs_broker!();
    let app = unique("withdrawals");
    let (users_in, countries_in) = (
        format!("{app}-withdrawals"),
        format!("{app}-country_withdrawals"),
    );
    let (user_totals, country_windows, country_closed) = (
        format!("{app}-user-totals"),
        format!("{app}-country-windows"),
        format!("{app}-country-closed"),
    );
    for topic in [&users_in, &countries_in] {
        create_topic(topic, 4);
    }
    for topic in [&user_totals, &country_windows, &country_closed] {
        create_topic(topic, 1);
    }

    // Per user and hour, at the message timestamp. h0 is the hour that began two hours ago.
    let h0 = now_ms() / HOUR * HOUR - 2 * HOUR;
    let minute = 60 * SECOND;
    let by_user = [
        ("alice", 10, h0 + minute),
        ("alice", 20, h0 + 30 * minute),
        ("bob", 5, h0 + 40 * minute),
        ("alice", 7, h0 + HOUR + 5 * minute),
        // Late, but its hour closes only an hour (the default expiry) after it ends.
        ("alice", 100, h0 + 50 * minute),
        // Moves alice's partition past h0's end + expiry: h0 closes...
        ("alice", 1, h0 + 2 * HOUR + 10 * minute),
        // ...so this one, for h0, is left out.
        ("alice", 1000, h0 + 20 * minute),
    ];
    let records: Vec<(Value, Value, i64)> = by_user
        .iter()
        .map(|&(user, amount, at)| (json!(user), withdrawal(user, "no", amount, at), at))
        .collect();
    produce_json_at(&users_in, &records);

    // Per country and 10 s window at the value's `date`, expiring 10 s after each window.
    // All from one user, so one source partition keeps them in order through the regroup.
    let c0 = now_ms() / (10 * SECOND) * (10 * SECOND) - 60 * SECOND;
    let by_country = [
        ("no", 1, c0 + SECOND),
        ("se", 4, c0 + 3 * SECOND),
        ("no", 2, c0 + 5 * SECOND),
        ("no", 8, c0 + 12 * SECOND),
        ("no", 16, c0 + 6 * SECOND), // late, inside the expiry: counted in c0
        ("no", 64, c0 + 40 * SECOND), // moves time past c0 + 30: c0 and c0 + 10 close
        ("no", 32, c0 + 2 * SECOND), // late, outside: left out
    ];
    let records: Vec<(Value, Value, i64)> = by_country
        .iter()
        .map(|&(country, amount, at)| {
            (
                json!("carol"),
                withdrawal("carol", country, amount, at),
                now_ms(),
            )
        })
        .collect();
    produce_json_at(&countries_in, &records);

    let mut worker = Worker::start(&app, "w", &[]);

    // Users: every update reported, in order per user, with the window's new total.
    let done = wait_until(DONE, || reports(&user_totals).len() == by_user.len());
    assert!(done, "{:?}\n{}", reports(&user_totals), worker.log());
    let mut totals: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for report in reports(&user_totals) {
        let user = if report["user"] == "alice" {
            "alice"
        } else {
            "bob"
        };
        totals
            .entry(user)
            .or_default()
            .push(report["total"].clone());
    }
    assert_eq!(
        totals["alice"],
        [
            json!(10),
            json!(30),
            json!(7),
            json!(130),
            json!(1),
            Value::Null
        ],
        "alice: h0 gets the late 100 but not the 1000 after h0 closed"
    );
    assert_eq!(totals["bob"], [json!(5)]);

    // Countries: each closed window's final total, once, including the last window of
    // each country, which closes only through the passing of time (no event follows).
    let closed = || -> Vec<(String, i64, i64)> {
        reports(&country_closed)
            .iter()
            .map(|r| {
                (
                    r["country"].as_str().unwrap().to_owned(),
                    r["start"].as_i64().unwrap() - c0,
                    r["total"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let expected = vec![
        ("no".to_owned(), 0, 1 + 2 + 16),
        ("no".to_owned(), 10 * SECOND, 8),
        ("no".to_owned(), 40 * SECOND, 64),
        ("se".to_owned(), 0, 4),
    ];
    let all_closed = wait_until(DONE, || {
        let mut seen = closed();
        seen.sort();
        seen == expected
    });
    assert!(
        all_closed,
        "closed windows: {:?}\n{}",
        closed(),
        worker.log()
    );

    // Hopping windows of 20 s every 10 s: the first withdrawal (c0 + 1 s) is in two.
    let windows = reports(&country_windows);
    let first = windows
        .iter()
        .find(|r| r["country"] == "no" && r["date"] == c0 + SECOND)
        .unwrap();
    let counts: Vec<(i64, u64)> = first["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w[0]["start"].as_i64().unwrap() - c0, w[1].as_u64().unwrap()))
        .collect();
    assert_eq!(counts, [(-10 * SECOND, 1), (0, 1)], "{first}");
    let late = windows
        .iter()
        .find(|r| r["date"] == c0 + 2 * SECOND)
        .unwrap();
    assert_eq!(
        late["total"],
        Value::Null,
        "left out after c0 closed: {late}"
    );

    // A closed window leaves the changelog's view: its key's last record is a tombstone.
    worker.stop();
    let records = read_all(&format!("{app}-country_totals-changelog"));
    let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = (common::last_per_key(&records).into_iter())
        .map(|(key, record)| (key, record.value.clone()))
        .collect();
    // Besides the windows, the changelog keeps the stream time of partitions that closed
    // windows (one key, in each such partition).
    let stream_times = last
        .keys()
        .filter(|k| k.as_slice() == b"\"__faust_stream_time\"")
        .count();
    assert_eq!(stream_times, 1, "{last:?}");
    last.retain(|k, _| k.starts_with(b"["));
    assert_eq!(last.len(), 4, "{last:?}");
    assert!(last.values().all(Option::is_none), "{last:?}");
    let closes = closed().len();
    assert_eq!(closes, expected.len(), "each window closed once");
}

#[test]
fn a_window_still_open_when_its_worker_stops_closes_once_where_it_is_recovered() {
    needs_broker!();
    let app = unique("reopen");
    let input = format!("{app}-country_withdrawals");
    let (windows, closed) = (
        format!("{app}-country-windows"),
        format!("{app}-country-closed"),
    );
    create_topic(&input, 4);
    create_topic(&windows, 1);
    create_topic(&closed, 1);
    // Five seconds ahead: the window closes at least 15 s from now.
    let date = now_ms() + 5 * SECOND;
    let start = date / (10 * SECOND) * (10 * SECOND);
    let records: Vec<(Value, Value, i64)> = [3, 4]
        .iter()
        .map(|&amount| {
            (
                json!("dave"),
                withdrawal("dave", "is", amount, date),
                now_ms(),
            )
        })
        .collect();
    produce_json_at(&input, &records);

    let mut first = Worker::start(&app, "first", &[]);
    assert!(
        wait_until(DONE, || reports(&windows).len() == 2),
        "{}",
        first.log()
    );
    // The web lookup of a windowed table answers the key's live windows.
    let lookup = common::http_get(&format!("{}/tables/country_totals/is", first.web_url()));
    assert_eq!(
        lookup.json(),
        json!([{ "start": start, "end": start + 10 * SECOND, "value": 7 }]),
        "{}",
        first.log()
    );
    first.stop();
    assert!(
        reports(&closed).is_empty(),
        "closed too early: {}",
        first.log()
    );

    // A fresh datadir: the window comes back from the changelog, and closes on time.
    let mut second = Worker::start(&app, "second", &[]);
    let done = wait_until(DONE, || !reports(&closed).is_empty());
    assert!(done, "{}", second.log());
    second.stop();
    assert_eq!(
        reports(&closed),
        [json!({ "country": "is", "start": start, "total": 7 })],
        "{}",
        second.log()
    );
}

#[test]
fn a_windowed_changelog_written_by_python_faust_is_recovered_and_continued() {
    needs_broker!();
    let app = unique("python-windows");
    let users_in = format!("{app}-withdrawals");
    let user_totals = format!("{app}-user-totals");
    create_topic(&users_in, 4);
    create_topic(&user_totals, 1);
    let now = now_ms();
    produce_json_at(
        &users_in,
        &[(json!("café"), withdrawal("café", "no", 5, now), now)],
    );
    let partition = read_all(&users_in)[0].partition;
    // user_totals (tumbling 1 h) as Python Faust writes a window (docs/FAUST-FORMATS.md,
    // faust-streaming 0.15.3): `[key,[start,end]]` in seconds, end = start + 3600 - 0.1,
    // the key JSON with the é escaped, in the partition of the event that wrote it.
    let hour = now / HOUR * HOUR / 1000;
    let python_key = format!(r#"["caf\u00e9",[{hour}.0,{}.9]]"#, hour + 3599);
    let changelog = format!("{app}-user_totals-changelog");
    create_topic(&changelog, 4);
    let record = (Some(python_key.into_bytes()), Some(b"30".to_vec()));
    produce_to(&changelog, partition, &[record]);

    let mut worker = Worker::start_on(&app, "w", &datadir("python-windows"), &[]);
    let done = wait_until(DONE, || reports(&user_totals).len() == 1);
    assert!(done, "{}", worker.log());
    assert_eq!(
        reports(&user_totals)[0]["total"],
        35,
        "recovered 30, then 5"
    );
    // The worker's own record of the window has the key Faust writes (unescaped).
    let ours = format!(r#"["café",[{hour}.0,{}.9]]"#, hour + 3599);
    let written = wait_until(DONE, || {
        read_all(&changelog)
            .iter()
            .any(|r| r.key.as_deref() == Some(ours.as_bytes()) && r.json() == 35)
    });
    worker.stop();
    assert!(written, "{:?}", read_all(&changelog));
}
