//! The app the integration tests run as real worker processes.
//!
//! - `double` reads orders from `{app_id}-double` and forwards them, doubled, to its
//!   sink `faust-test-doubled`.
//! - `track` reads `{app_id}-track` (JSON `Item`s) and reports each one to `{app_id}-out`
//!   with the name of the worker that processed it (`TEST_WORKER`). An item can ask to
//!   fail or panic, to exercise supervision. `TEST_DELAY_MS` slows it down.
//! - `strict` reads `{app_id}-strict` and stops the worker on an item that asks to fail
//!   while `TEST_STRICT=1` (`on_error = "stop"`); it reports the rest to
//!   `{app_id}-strict-out`.
//! - `shout` reads text (the string codec) and reports it upper-cased to `{app_id}-shouted`.
//! - `configure` and `lookup` write and read the global table `settings`.
//! - `count` counts words in the table `counts` (and their lengths in `lengths`) and
//!   reports counts to `{app_id}-counted`.
//! - `sequence` checks and sums per-partition sequences in the table `sums` (chaos test).
//! - `regroup` counts visits by country through a `group_by` (`visits_by_country`),
//!   `batches` runs filter/map/enumerate/take, `relay` goes `through` another topic,
//!   `tally` writes `take()` batches to the table `tallies`.
//! - `withdrawals` and `country_withdrawals` total withdrawals per user and hour and per
//!   country and 10 s (windowed tables, Faust's withdrawals example).
//! - `soak_count` (two actors, with a sink) and `soak_sum` read `{app_id}-soak` and both
//!   write the table `soak_totals`; `soak_sum` also totals windows of the events' time
//!   (`soak_windows`, whose `on_window_close` reports to `{app_id}-soak-closed`) and keeps
//!   each partition's highest number in the global table `soak_last` (the soak test).
//! - `greet` forwards greetings to a Python Faust app as its Record, and `answers`
//!   counts its replies in the table `answers` (the interop test); `shuffle_words` and
//!   `count_words` are Faust's word_count example under its Python names (the
//!   migration test).
//! - `times100` answers asks on `{app_id}-times100` with the value times 100, and the
//!   command `ask AGENT VALUE` asks any agent (or topic) and prints the reply (the RPC
//!   tests, with Python Faust asking and answering too).
//! - `heartbeat`, a leader-only timer, reports which worker leads; `lead`, a leader-only
//!   task, reports each worker that became the leader; `minutely`, a crontab, reports
//!   when it ran.
//! - `DecodeErrorPrinter`, a user sensor, prints the messages agents could not decode.

use std::time::Duration;

use faust::{
    clap,
    prelude::*,
    tables::{Window, WindowedTable},
};

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: String,
    amount: i64,
}

/// `TEST_WORKER`: the name agents report themselves under.
fn worker_name() -> String {
    std::env::var("TEST_WORKER").unwrap_or_default()
}

/// `{app_id}-{suffix}`: where an agent reports to the test (the id comes from `FAUST_ID`).
fn report_topic(suffix: &str) -> String {
    let app_id = std::env::var("FAUST_ID").unwrap_or_default();
    format!("{app_id}-{suffix}")
}

/// `TEST_DELAY_MS`: how long `track` and `count` take per event.
fn delay() -> Option<Duration> {
    std::env::var("TEST_DELAY_MS")
        .ok()
        .and_then(|d| d.parse().ok())
        .map(Duration::from_millis)
}

#[faust::agent(sink = "faust-test-doubled")]
async fn double(mut orders: Stream<Order>, doubled: Sink<Order>) -> faust::Result<()> {
    while let Some(order) = orders.next().await {
        doubled
            .send(&Order {
                id: order.id,
                amount: order.amount * 2,
            })
            .await?;
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Item {
    n: u64,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    panic: bool,
}

#[derive(Debug, Serialize)]
struct Processed {
    n: u64,
    worker: String,
    partition: i32,
    offset: i64,
}

#[faust::agent(concurrency = 2)]
async fn track(mut items: Stream<Item>) -> faust::Result<()> {
    let worker = worker_name();
    let delay = delay();
    let out = report_topic("out");
    while let Some(event) = items.next_event().await {
        let item = event.value;
        if item.fail {
            return Err(faust::Error::msg(format!("item {} asked to fail", item.n)));
        }
        if item.panic {
            panic!("item {} asked to panic", item.n);
        }
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let processed = Processed {
            n: item.n,
            worker: worker.clone(),
            partition: event.partition,
            offset: event.offset,
        };
        faust::send(&out, Some(&item.n), &processed).await?;
    }
    Ok(())
}

/// Stops the worker on an item that asks to fail while `TEST_STRICT=1`, which leaves
/// the item unacknowledged for the next start; reports the others.
#[faust::agent(on_error = "stop")]
async fn strict(mut items: Stream<Item>) -> faust::Result<()> {
    let strict = std::env::var("TEST_STRICT").is_ok_and(|v| v == "1");
    let out = report_topic("strict-out");
    while let Some(item) = items.next().await {
        if item.fail && strict {
            return Err(faust::Error::msg(format!("item {} asked to fail", item.n)));
        }
        faust::send(&out, Some(&item.n), &item.n).await?;
    }
    Ok(())
}

/// Reads `{app_id}-shout` as UTF-8 text and reports it upper-cased to `{app_id}-shouted`.
#[faust::agent(codec = "string")]
async fn shout(mut lines: Stream<String>) -> faust::Result<()> {
    let out = report_topic("shouted");
    while let Some(line) = lines.next().await {
        faust::send(&out, None::<&str>, &line.to_uppercase()).await?;
    }
    Ok(())
}

/// word -> occurrences, kept by `count`. Its hooks report what recovery replayed.
#[faust::table(
    name = "counts",
    web = true,
    on_recover = counts_recovered,
    on_changelog_event = count_replayed
)]
static COUNTS: Table<String, u64>;

/// Changelog records of `counts` recovery applied in this worker.
static COUNTS_REPLAYED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_replayed(_word: String, _count: Option<u64>) {
    COUNTS_REPLAYED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

async fn counts_recovered() -> faust::Result<()> {
    let replayed = COUNTS_REPLAYED.load(std::sync::atomic::Ordering::SeqCst);
    println!("COUNTS RECOVERED after {replayed} changelog events");
    Ok(())
}

#[derive(Debug, Serialize)]
struct Counted {
    word: String,
    count: u64,
    worker: String,
}

/// Counts the words of `{app_id}-count` (keyed by word) in `COUNTS`, and reports each new
/// count to `{app_id}-counted`.
#[faust::agent]
async fn count(mut words: Stream<String>) -> faust::Result<()> {
    let worker = worker_name();
    let delay = delay();
    let out = report_topic("counted");
    while let Some(word) = words.next().await {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let count = COUNTS.update(&word, |n| *n += 1)?;
        LENGTHS.update(&(word.len() as u64), |n| *n += 1)?;
        let counted = Counted {
            word: word.clone(),
            count,
            worker: worker.clone(),
        };
        faust::send(&out, Some(&word), &counted).await?;
    }
    Ok(())
}

/// word length -> words counted (by `count`): a table with numeric keys.
#[faust::table(name = "lengths", web = true)]
static LENGTHS: Table<u64, u64>;

/// How far `sequence` got in one partition: the next value it expects, and the sum.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    next: u64,
    sum: u64,
}

/// partition -> its `Progress`: the chaos test's oracle.
#[faust::table(name = "sums")]
static SUMS: Table<i32, Progress>;

/// Reads `{app_id}-sequence`, where partition p holds 0, 1, 2, ... keyed by p; checks
/// each value follows the previous one (printing any gap or repeat) and sums them.
#[faust::agent]
async fn sequence(mut values: Stream<u64>) -> faust::Result<()> {
    while let Some(event) = values.next_event().await {
        let (partition, value) = (event.partition, event.value);
        SUMS.update(&partition, |progress| {
            if value > progress.next {
                eprintln!(
                    "sequence gap: partition {partition} expected {} got {value}",
                    progress.next
                );
            } else if value < progress.next {
                eprintln!(
                    "sequence repeat: partition {partition} expected {} got {value}",
                    progress.next
                );
            }
            progress.next = value + 1;
            progress.sum += value;
        })?;
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Visit {
    user: String,
    country: String,
}

/// country -> visits, written from the stream regrouped by country.
#[faust::table(name = "visits_by_country")]
static VISITS: Table<String, u64>;

/// Reads visits keyed by user from `{app_id}-regroup`, regroups them by country, counts
/// them in `visits_by_country` and reports each count to `{app_id}-regrouped`.
#[faust::agent(group_by = "country")]
async fn regroup(visits: Stream<Visit>) -> faust::Result<()> {
    let worker = worker_name();
    let out = report_topic("regrouped");
    let mut by_country = visits.group_by("country", |visit| visit.country.clone())?;
    while let Some(event) = by_country.next_event().await {
        let key = event.decode_key::<String>()?;
        let visit = event.value;
        let count = VISITS.update(&visit.country, |n| *n += 1)?;
        let report = serde_json::json!({
            "country": visit.country,
            "count": count,
            "worker": worker,
            "topic": &*event.topic,
            "key": key,
        });
        faust::send(&out, Some(&visit.country), &report).await?;
    }
    Ok(())
}

/// Reads numbers from `{app_id}-batches`, keeps the even ones, multiplies them by ten,
/// numbers them and reports them in batches of at most 5 to `{app_id}-batched`.
#[faust::agent]
async fn batches(numbers: Stream<u64>) -> faust::Result<()> {
    let out = report_topic("batched");
    let mut numbered = numbers.filter(|n| n % 2 == 0).map(|n| n * 10).enumerate();
    while let Some(batch) = numbered.take(5, Duration::from_millis(300)).await {
        faust::send(&out, None::<&str>, &batch).await?;
    }
    Ok(())
}

/// Holds each event of `{app_id}-hold_three` past the loop and acknowledges them three
/// at a time (`Stream::hold`), printing `HELD {offset}` and `ACKED {offsets}`.
#[faust::agent]
async fn hold_three(mut values: Stream<u64>) -> faust::Result<()> {
    let mut held = Vec::new();
    let mut offsets = Vec::new();
    while let Some(event) = values.next_event().await {
        println!("HELD {}", event.offset);
        offsets.push(event.offset);
        held.push(values.hold());
        if held.len() == 3 {
            held.drain(..).for_each(faust::Held::ack);
            println!("ACKED {offsets:?}");
            offsets.clear();
        }
    }
    Ok(())
}

/// "all" -> numbers tallied by `tally`.
#[faust::table(name = "tallies")]
static TALLIES: Table<String, u64>;

/// Tallies `{app_id}-tally` in batches of up to 25 (2 s) in `tallies`, and reports each
/// batch's outcome (its size, and the total or why the write was refused) to
/// `{app_id}-tallied`.
#[faust::agent]
async fn tally(mut numbers: Stream<u64>) -> faust::Result<()> {
    let out = report_topic("tallied");
    while let Some(batch) = numbers.take(25, Duration::from_secs(2)).await {
        let size = batch.len() as u64;
        let outcome = match TALLIES.update(&"all".to_owned(), |n| *n += size) {
            Ok(total) => serde_json::json!({ "size": size, "total": total }),
            Err(e) => serde_json::json!({ "size": size, "refused": e.to_string() }),
        };
        faust::send(&out, None::<&str>, &outcome).await?;
    }
    Ok(())
}

/// Forwards `{app_id}-relay` through the topic `{app_id}-through` and reports what it
/// reads from there, with the topic, to `{app_id}-relayed`.
#[faust::agent(through = "{app_id}-through")]
async fn relay(values: Stream<String>) -> faust::Result<()> {
    let out = report_topic("relayed");
    let mut through = values.through("{app_id}-through")?;
    while let Some(event) = through.next_event().await {
        let report = serde_json::json!({ "value": event.value, "topic": &*event.topic });
        faust::send(&out, None::<&str>, &report).await?;
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Withdrawal {
    user: String,
    country: String,
    amount: i64,
    /// Milliseconds since the Unix epoch.
    date: i64,
}

/// user -> total withdrawn per hour, at the message timestamp (Faust's withdrawals example).
#[faust::table(name = "user_totals", default = 0, tumbling = "1h")]
static USER_TOTALS: WindowedTable<String, i64>;

/// Totals per user and hour: reports each update (the window's new total, or null for
/// an event after its window closed) to `{app_id}-user-totals`.
#[faust::agent]
async fn withdrawals(mut withdrawals: Stream<Withdrawal>) -> faust::Result<()> {
    let out = report_topic("user-totals");
    while let Some(w) = withdrawals.next().await {
        let total = USER_TOTALS.update(&w.user, |t| *t += w.amount)?;
        let report = serde_json::json!({ "user": w.user, "date": w.date, "total": total });
        faust::send(&out, Some(&w.user), &report).await?;
    }
    Ok(())
}

/// country -> total per 10 s at the withdrawal's `date`, kept 10 s after each window.
#[faust::table(
    name = "country_totals",
    web = true,
    default = 0,
    tumbling = "10s",
    expires = "10s",
    on_window_close = country_closed
)]
static COUNTRY_TOTALS: WindowedTable<String, i64>;

/// country -> withdrawals in 20 s windows every 10 s.
#[faust::table(
    name = "country_counts",
    default = 0,
    hopping = "20s",
    step = "10s",
    expires = "1h"
)]
static COUNTRY_COUNTS: WindowedTable<String, u64>;

/// Reports each closed window's final total to `{app_id}-country-closed`.
async fn country_closed(country: String, window: Window, total: i64) -> faust::Result<()> {
    let report = serde_json::json!({ "country": country, "start": window.start, "total": total });
    faust::send(&report_topic("country-closed"), Some(&country), &report).await?;
    Ok(())
}

/// Regroups withdrawals by country and totals them per window of their `date`; reports
/// the hopping windows of the country after each to `{app_id}-country-windows`.
#[faust::agent(group_by = "country")]
async fn country_withdrawals(withdrawals: Stream<Withdrawal>) -> faust::Result<()> {
    let out = report_topic("country-windows");
    let mut by_country = withdrawals.group_by("country", |w| w.country.clone())?;
    while let Some(w) = by_country.next().await {
        let total = COUNTRY_TOTALS.update_at(&w.country, w.date, |t| *t += w.amount)?;
        COUNTRY_COUNTS.update_at(&w.country, w.date, |n| *n += 1)?;
        let windows = COUNTRY_COUNTS.windows(&w.country)?;
        let report = serde_json::json!({
            "country": w.country, "date": w.date, "total": total, "counts": windows,
        });
        faust::send(&out, Some(&w.country), &report).await?;
    }
    Ok(())
}

/// A greeting, as the interop test's Python Faust app declares it (`interop.Greeting`).
#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    name: String,
    n: i64,
}

/// Forwards each greeting of `{app_id}-greet` (keyed by name) to `{app_id}-to-python`
/// under the same key, as the Python app's Record (its namespace), for its untyped agent.
#[faust::agent]
async fn greet(mut greetings: Stream<Greeting>) -> faust::Result<()> {
    let to_python = report_topic("to-python");
    while let Some(event) = greetings.next_event().await {
        let name: Option<String> = event.decode_key()?;
        let greeting = faust::codec::Namespaced::new("interop.Greeting", event.value);
        faust::send(&to_python, name.as_ref(), &greeting).await?;
    }
    Ok(())
}

/// name -> answers from Python Faust, kept by `answers`.
#[faust::table(name = "answers")]
static ANSWERS: Table<String, u64>;

/// Counts the answers the Python app sends to `{app_id}-from-python` by their key, and
/// reports each, with the partition it came from, to `{app_id}-answers`.
#[faust::agent(topic = "{app_id}-from-python")]
async fn answers(mut answers: Stream<Greeting>) -> faust::Result<()> {
    let out = report_topic("answers");
    while let Some(event) = answers.next_event().await {
        let key: String = event.decode_key()?.unwrap_or_default();
        let count = ANSWERS.update(&key, |n| *n += 1)?;
        let report = serde_json::json!({
            "key": key, "name": event.value.name, "n": event.value.n,
            "count": count, "partition": event.partition,
        });
        faust::send(&out, Some(&key), &report).await?;
    }
    Ok(())
}

/// Faust's word_count example with the names its Python original gets when run as a
/// script (the migration test): `shuffle_words` splits the posts of `{app_id}-posts`
/// and sends each word, keyed by itself, to `count_words`, which counts it in the table
/// `word_counts`.
#[faust::agent(topic = "{app_id}-posts")]
async fn shuffle_words(mut posts: Stream<String>) -> faust::Result<()> {
    while let Some(post) = posts.next().await {
        for word in post.split_whitespace() {
            faust::send("count_words", Some(word), &word).await?;
        }
    }
    Ok(())
}

/// word -> count, kept by `count_words` (Faust's `word_counts`).
#[faust::table(name = "word_counts")]
static WORD_COUNTS: Table<String, u64>;

#[faust::agent(topic = "{app_id}-__main__.count_words")]
async fn count_words(mut words: Stream<String>) -> faust::Result<()> {
    while let Some(word) = words.next().await {
        WORD_COUNTS.update(&word, |n| *n += 1)?;
    }
    Ok(())
}

/// Three stages, two repartitions (tests/exactly_once.rs): `chain_split` splits the
/// posts of `{app_id}-chain-posts` into words for `chain_initials`, which sends each
/// word's first letter, keyed by it, to `chain_count`, which counts them in `initials`.
#[faust::agent(topic = "{app_id}-chain-posts")]
async fn chain_split(mut posts: Stream<String>) -> faust::Result<()> {
    while let Some(post) = posts.next().await {
        for word in post.split_whitespace() {
            faust::send("chain_initials", Some(word), &word).await?;
        }
    }
    Ok(())
}

#[faust::agent]
async fn chain_initials(mut words: Stream<String>) -> faust::Result<()> {
    while let Some(word) = words.next().await {
        let initial: String = word.chars().take(1).collect();
        faust::send("chain_count", Some(&initial), &initial).await?;
    }
    Ok(())
}

/// initial -> how many words began with it, kept by `chain_count`.
#[faust::table(name = "initials")]
static INITIALS: Table<String, u64>;

#[faust::agent]
async fn chain_count(mut initials: Stream<String>) -> faust::Result<()> {
    while let Some(initial) = initials.next().await {
        INITIALS.update(&initial, |n| *n += 1)?;
    }
    Ok(())
}

/// A number of the soak test's input, and when it was produced (ms since the epoch).
#[derive(Debug, Serialize, Deserialize)]
struct SoakEvent {
    n: u64,
    ts: i64,
}

/// How many numbers, and their sum.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Tally {
    count: u64,
    sum: u64,
}

impl Tally {
    fn add(&mut self, n: u64) {
        self.count += 1;
        self.sum += n;
    }
}

/// `count-{partition}` (by `soak_count`) and `sum-{partition}` (by `soak_sum`): the
/// numbers of each partition of `{app_id}-soak`, tallied by two agents.
#[faust::table(name = "soak_totals")]
static SOAK_TOTALS: Table<String, Tally>;

/// partition -> the numbers of each 10 s window of their time, closed a minute after
/// the window ends (longer than a worker of the soak test is ever away).
#[faust::table(
    name = "soak_windows",
    tumbling = "10s",
    expires = "60s",
    on_window_close = soak_window_closed
)]
static SOAK_WINDOWS: WindowedTable<i32, Tally>;

/// partition -> the highest number seen in it, on every worker.
#[faust::table(name = "soak_last", global = true)]
static SOAK_LAST: Table<i32, u64>;

/// Reports a closed window's tally to `{app_id}-soak-closed`.
async fn soak_window_closed(partition: i32, window: Window, tally: Tally) -> faust::Result<()> {
    let report = serde_json::json!({
        "partition": partition, "start": window.start, "count": tally.count, "sum": tally.sum,
    });
    faust::send(&report_topic("soak-closed"), Some(&partition), &report).await?;
    Ok(())
}

/// Tallies each partition's numbers under `count-{partition}` and forwards every number
/// to its sink (two actors).
#[faust::agent(topic = "{app_id}-soak", sink = "{app_id}-soak-sunk", concurrency = 2)]
async fn soak_count(mut events: Stream<SoakEvent>, sunk: Sink<u64>) -> faust::Result<()> {
    while let Some(event) = events.next_event().await {
        let n = event.value.n;
        SOAK_TOTALS.update(&format!("count-{}", event.partition), |t| t.add(n))?;
        sunk.send(&n).await?;
    }
    Ok(())
}

/// Tallies each partition's numbers under `sum-{partition}`, per window of their time,
/// and keeps the highest in the global table.
#[faust::agent(topic = "{app_id}-soak")]
async fn soak_sum(mut events: Stream<SoakEvent>) -> faust::Result<()> {
    while let Some(event) = events.next_event().await {
        let (partition, SoakEvent { n, ts }) = (event.partition, event.value);
        SOAK_TOTALS.update(&format!("sum-{partition}"), |t| t.add(n))?;
        if SOAK_WINDOWS
            .update_at(&partition, ts, |t| t.add(n))?
            .is_none()
        {
            eprintln!("soak: late event {n} at {ts} in partition {partition}");
        }
        if SOAK_LAST.try_get(&partition)?.is_none_or(|last| last < n) {
            SOAK_LAST.insert(&partition, &n)?;
        }
    }
    Ok(())
}

/// Settings every worker holds whole.
#[faust::table(name = "settings", global = true, web = true)]
static SETTINGS: Table<String, String>;

#[derive(Debug, Deserialize)]
struct Setting {
    key: String,
    value: String,
}

/// Stores the settings sent to `{app_id}-configure` in the global table `settings`.
#[faust::agent]
async fn configure(mut settings: Stream<Setting>) -> faust::Result<()> {
    while let Some(setting) = settings.next().await {
        SETTINGS.insert(&setting.key, &setting.value)?;
    }
    Ok(())
}

/// Answers each setting key sent to `{app_id}-lookup` with the value this worker holds,
/// on `{app_id}-looked-up`.
#[faust::agent]
async fn lookup(mut keys: Stream<String>) -> faust::Result<()> {
    let worker = worker_name();
    let out = report_topic("looked-up");
    while let Some(key) = keys.next().await {
        let value = SETTINGS.try_get(&key)?;
        let answer = serde_json::json!({ "key": key, "value": value, "worker": worker });
        faust::send(&out, None::<&str>, &answer).await?;
    }
    Ok(())
}

/// With `TEST_WRITE_OUTSIDE=1`, writes to `counts` outside event processing, which a
/// table without `use_partitioner` refuses.
#[faust::task]
async fn write_outside_events() -> faust::Result<()> {
    if std::env::var("TEST_WRITE_OUTSIDE").is_ok_and(|v| v == "1") {
        COUNTS.insert(&"outside".to_owned(), &1)?;
    }
    Ok(())
}

/// With `TEST_HEARTBEAT=1`, the group's leader reports itself to `{app_id}-heartbeats`
/// every 300 ms.
#[faust::timer(interval = "300ms", on_leader = true)]
async fn heartbeat() -> faust::Result<()> {
    if std::env::var("TEST_HEARTBEAT").is_ok_and(|v| v == "1") {
        let beat = serde_json::json!({ "worker": worker_name(), "leader": faust::is_leader() });
        faust::send(&report_topic("heartbeats"), None::<&str>, &beat).await?;
    }
    Ok(())
}

/// With `TEST_HEARTBEAT=1`, reports to `{app_id}-leader-tasks` once this worker first
/// becomes the group's leader.
#[faust::task(on_leader = true)]
async fn lead() -> faust::Result<()> {
    if std::env::var("TEST_HEARTBEAT").is_ok_and(|v| v == "1") {
        let report = serde_json::json!({ "worker": worker_name() });
        faust::send(&report_topic("leader-tasks"), None::<&str>, &report).await?;
    }
    Ok(())
}

/// With `TEST_CRONTAB=1`, reports the time it ran at to `{app_id}-minutely` every minute.
#[faust::crontab("* * * * *")]
async fn minutely() -> faust::Result<()> {
    if std::env::var("TEST_CRONTAB").is_ok_and(|v| v == "1") {
        let report = serde_json::json!({ "at": faust::clock::now_ms() });
        faust::send(&report_topic("minutely"), None::<&str>, &report).await?;
    }
    Ok(())
}

/// Answers each ask with its value times 100 (agent RPC).
#[faust::agent(topic = "{app_id}-times100")]
async fn times100(mut stream: Stream<f64>) -> faust::Result<()> {
    while let Some(value) = stream.next().await {
        stream.reply(&(value * 100.0)).await?;
    }
    Ok(())
}

/// `ask AGENT VALUE`: the arguments.
#[derive(clap::Args)]
struct Ask {
    /// An agent's name, or the topic an agent (here or in Python Faust) reads
    agent: String,
    /// A number to send
    value: f64,
}

/// Asks an agent about a number and prints its reply.
#[faust::command]
async fn ask(ask: Ask) -> faust::Result<()> {
    let reply: serde_json::Value = faust::Agent::named(&ask.agent).ask(&ask.value).await?;
    println!("reply: {reply}");
    Ok(())
}

/// Prints its arguments: a user-defined command.
#[faust::command]
async fn echo(args: Vec<String>) -> faust::Result<()> {
    println!("echo: {}", args.join(" "));
    Ok(())
}

/// A user sensor: prints each message an agent could not decode.
struct DecodeErrorPrinter;

impl faust::sensors::Sensor for DecodeErrorPrinter {
    fn decode_error(&self, agent: &str, topic: &str, partition: i32, offset: i64, _error: &str) {
        eprintln!("test sensor: {agent} could not decode {topic}[{partition}]@{offset}");
    }
}

// A small buffer, so that back-pressure (pause and resume) happens in every test. Each
// test creates the topics it writes; the worker creates the rest of the many topics its
// agents read (a test overrides that with FAUST_CREATE_TOPICS). `{app_id}-declared` is
// how a user declares a topic's settings (tests/worker.rs describes it).
faust::main!(
    id = "faust-test-app",
    partitions = 4,
    max_buffered_per_partition = 64,
    sensor = DecodeErrorPrinter,
    create_topics = faust::CreateTopics::All,
    topic = faust::Topic::new("{app_id}-declared")
        .partitions(3)
        .replicas(3)
        .retention(std::time::Duration::from_secs(3600))
        .config("max.message.bytes", "2000000")
        .create(true)
);
