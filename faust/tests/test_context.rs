//! The test context itself, without a broker: operators, group_by routing, batches, a
//! panicking operator, timers and crontabs on a moved clock, and windows closing.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use faust::{
    prelude::*,
    tables::{Window, WindowedTable},
    testing::TestContext,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Visit {
    user: String,
    page: String,
}

/// page -> visits, fed through a group_by.
#[faust::table(name = "page_visits", default = 0)]
static PAGE_VISITS: Table<String, u64>;

#[faust::agent(topic = "visits", group_by = "page")]
async fn count_pages(visits: Stream<Visit>) -> faust::Result<()> {
    let mut by_page = visits.group_by("page", |v| v.page.clone())?;
    while let Some(event) = by_page.next_event().await {
        PAGE_VISITS.update(&event.value.page, |n| *n += 1)?;
    }
    Ok(())
}

/// Numbers: panics on 13 in `map`, keeps evens, reports batches to `batched`.
#[faust::agent(topic = "numbers", sink = "batched")]
async fn batch_numbers(numbers: Stream<u64>, out: Sink<Vec<u64>>) -> faust::Result<()> {
    let mut evens = numbers
        .map(|n| if n == 13 { panic!("unlucky") } else { n })
        .filter(|n| n % 2 == 0);
    while let Some(batch) = evens.take(3, Duration::from_secs(30)).await {
        out.send(&batch).await?;
    }
    Ok(())
}

/// Batches of letters, reported with each one's key and offset.
#[faust::agent(topic = "letters", sink = "letter_batches")]
async fn batch_letters(
    mut letters: Stream<String>,
    out: Sink<Vec<(String, String, i64)>>,
) -> faust::Result<()> {
    while let Some(batch) = letters.take_events(2, Duration::from_secs(30)).await {
        let mut report = Vec::new();
        for event in &batch {
            let key: String = event.decode_key()?.unwrap_or_default();
            report.push((key, event.value.clone(), event.offset));
        }
        out.send(&report).await?;
    }
    Ok(())
}

static TICKS: AtomicUsize = AtomicUsize::new(0);
static CRON_RUNS: AtomicUsize = AtomicUsize::new(0);

#[faust::timer(interval = "10s", on_leader = true)]
async fn tick() -> faust::Result<()> {
    TICKS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[faust::crontab("*/5 * * * *")]
async fn every_five_minutes() -> faust::Result<()> {
    CRON_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// page -> visits per minute (wall clock), closed one minute after each minute ends.
#[faust::table(name = "per_minute", default = 0, tumbling = "1m", expires = "1m", time = "wall", on_window_close = minute_closed)]
static PER_MINUTE: WindowedTable<String, u64>;

async fn minute_closed(page: String, window: Window, visits: u64) -> faust::Result<()> {
    faust::send("minutes", Some(&page), &(window.start, visits)).await?;
    Ok(())
}

#[faust::agent(topic = "clicks")]
async fn per_minute(mut clicks: Stream<String>) -> faust::Result<()> {
    while let Some(page) = clicks.next().await {
        PER_MINUTE.update(&page, |n| *n += 1)?;
    }
    Ok(())
}

fn visit(user: &str, page: &str) -> Visit {
    Visit {
        user: user.into(),
        page: page.into(),
    }
}

#[tokio::test]
async fn group_by_is_routed_through_its_repartition_topic() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    for (user, page) in [("ann", "/"), ("bob", "/"), ("cy", "/docs"), ("ann", "/")] {
        ctx.send("visits", Some(user), &visit(user, page)).await?;
    }
    assert_eq!(PAGE_VISITS.get(&"/".to_owned())?, 3);
    assert_eq!(PAGE_VISITS.get(&"/docs".to_owned())?, 1);
    let mut items = PAGE_VISITS.local_items()?;
    items.sort();
    assert_eq!(items, [("/".to_owned(), 3), ("/docs".to_owned(), 1)]);
    let mut values = PAGE_VISITS.local_values()?;
    values.sort();
    assert_eq!(values, [1, 3]);
    let forwarded = ctx.sent("test-app-count_pages-page-repartition");
    assert_eq!(forwarded.len(), 4);
    // Keyed by the page as Python Faust keys a string: its UTF-8 bytes.
    assert_eq!(forwarded[2].key.as_deref(), Some(&b"/docs"[..]));
    Ok(())
}

#[tokio::test]
async fn a_panicking_operator_skips_its_event_and_batches_go_on() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    for n in [2u64, 13, 4, 5, 6, 8] {
        ctx.send("numbers", Some(&0), &n).await?;
    }
    let batches: Vec<Vec<u64>> = ctx.sent_json("batched")?;
    assert_eq!(
        batches.concat(),
        [2, 4, 6, 8],
        "13 was skipped: {batches:?}"
    );
    assert!(batches.iter().all(|b| b.len() <= 3));
    Ok(())
}

#[tokio::test]
async fn batches_of_events_keep_their_keys_and_offsets() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    for letter in ["a", "b", "c", "d"] {
        ctx.send("letters", Some("k"), &letter).await?;
    }
    let batches: Vec<Vec<(String, String, i64)>> = ctx.sent_json("letter_batches")?;
    let event = |letter: &str, offset| ("k".to_owned(), letter.to_owned(), offset);
    // The test context runs each send to its end: a batch holds what had arrived.
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 2));
    assert_eq!(
        batches.concat(),
        [event("a", 0), event("b", 1), event("c", 2), event("d", 3)]
    );
    Ok(())
}

#[tokio::test]
async fn timers_and_crontabs_run_as_the_clock_moves() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    let (ticks, crons) = (
        TICKS.load(Ordering::SeqCst),
        CRON_RUNS.load(Ordering::SeqCst),
    );
    ctx.advance(Duration::from_secs(35)).await?;
    assert_eq!(TICKS.load(Ordering::SeqCst) - ticks, 3);
    ctx.disable_timer("tick")?;
    ctx.advance(Duration::from_secs(20 * 60)).await?;
    assert_eq!(TICKS.load(Ordering::SeqCst) - ticks, 3, "disabled");
    let runs = CRON_RUNS.load(Ordering::SeqCst) - crons;
    assert!(
        (4..=5).contains(&runs),
        "every five minutes over 20m35s: {runs}"
    );
    assert!(ctx.disable_timer("no-such-timer").is_err());
    Ok(())
}

#[tokio::test]
async fn wall_clock_windows_close_once_as_the_clock_moves() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    ctx.disable_timer("tick")?;
    ctx.disable_timer("every_five_minutes")?;
    let page = "/pricing".to_owned();
    // Keyed by page, so that the table partition is the key's (as reads look it up).
    ctx.send("clicks", Some(&page), &page).await?;
    ctx.send("clicks", Some(&page), &page).await?;
    assert_eq!(PER_MINUTE.now(&page)?, 2);
    assert_eq!(PER_MINUTE.windows(&page)?.len(), 1);
    ctx.advance(Duration::from_secs(150)).await?;
    let closed: Vec<(i64, u64)> = ctx.sent_json("minutes")?;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].1, 2);
    assert!(PER_MINUTE.windows(&page)?.is_empty());
    // The round saves the partition's stream time before it deletes a window: a round
    // stopped between the two would leave closed windows open to late events.
    let changelog: Vec<(String, bool)> = ctx
        .sent("test-app-per_minute-changelog")
        .into_iter()
        .map(|r| {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            (key, r.value.is_none())
        })
        .collect();
    let saved = changelog
        .iter()
        .position(|(key, _)| key.contains("__faust_stream_time"));
    let deleted = changelog.iter().position(|(_, tombstone)| *tombstone);
    assert!(
        saved.is_some() && deleted.is_some() && saved < deleted,
        "{changelog:?}"
    );
    ctx.advance(Duration::from_secs(600)).await?;
    assert_eq!(ctx.sent("minutes").len(), 1, "closed once");
    Ok(())
}

static FLAKY_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

/// page -> clicks per minute; its callback fails twice before it works.
#[faust::table(name = "flaky", default = 0, tumbling = "1m", expires = "1m", time = "wall", on_window_close = flaky_closed)]
static FLAKY: WindowedTable<String, u64>;

async fn flaky_closed(page: String, _window: Window, clicks: u64) -> faust::Result<()> {
    if FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(faust::Error::msg("the report service is down"));
    }
    faust::send("flaky-closed", Some(&page), &clicks).await?;
    Ok(())
}

#[faust::agent(topic = "flaky-clicks")]
async fn flaky_clicks(mut clicks: Stream<String>) -> faust::Result<()> {
    while let Some(page) = clicks.next().await {
        FLAKY.update(&page, |n| *n += 1)?;
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_window_callback_is_tried_again_with_backoff_until_it_works() -> faust::Result<()>
{
    let mut ctx = TestContext::new().await?;
    ctx.disable_timer("tick")?;
    ctx.disable_timer("every_five_minutes")?;
    let page = "/".to_owned();
    ctx.send("flaky-clicks", Some(&page), &page).await?;
    ctx.advance(Duration::from_secs(150)).await?; // closes; the callback fails
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 1);
    ctx.advance(Duration::from_millis(1500)).await?; // the retry is 2 s away
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 1);
    ctx.advance(Duration::from_millis(500)).await?; // fails again; next in 4 s
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 2);
    assert!(ctx.sent("flaky-closed").is_empty());
    ctx.advance(Duration::from_secs(4)).await?;
    let closed: Vec<u64> = ctx.sent_json("flaky-closed")?;
    assert_eq!(closed, [1], "the final value, once");
    ctx.advance(Duration::from_secs(600)).await?;
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 3);
    Ok(())
}

#[test]
fn test_contexts_live_side_by_side_each_with_its_own_tables() {
    // Two contexts alive at once, on two threads: each counts only what it was sent.
    let both_sent = std::sync::Arc::new(std::sync::Barrier::new(2));
    let run = |visits: usize| {
        let both_sent = both_sent.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut ctx: TestContext = TestContext::new().await?;
                for _ in 0..visits {
                    ctx.send("visits", Some("ann"), &visit("ann", "/side"))
                        .await?;
                }
                both_sent.wait();
                let seen = PAGE_VISITS.get(&"/side".to_owned())?;
                drop(ctx);
                Ok::<u64, faust::Error>(seen)
            })
        })
    };
    let (two, five) = (run(2), run(5));
    assert_eq!(two.join().unwrap().unwrap(), 2);
    assert_eq!(five.join().unwrap().unwrap(), 5);
}

/// Sends from a task it spawns: with `faust::spawn` the task keeps the worker.
#[faust::agent(topic = "spawning")]
async fn spawning(mut values: Stream<u64>) -> faust::Result<()> {
    while let Some(n) = values.next().await {
        let kept = faust::spawn(async move { faust::send("spawned", None::<&str>, &n).await });
        kept.await.map_err(faust::Error::msg)??;
    }
    Ok(())
}

#[tokio::test]
async fn a_task_spawned_with_faust_spawn_keeps_its_worker() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    ctx.send("spawning", None::<&str>, &7u64).await?;
    let spawned: Vec<u64> = ctx.sent_json("spawned")?;
    assert_eq!(spawned, [7]);
    Ok(())
}

#[tokio::test]
async fn a_send_returns_a_handle_on_where_the_message_landed() -> faust::Result<()> {
    let _ctx = TestContext::new().await?;
    let first = faust::send("landing", None::<&str>, &1u64).await?;
    let second = faust::send("landing", None::<&str>, &2u64).await?;
    assert_eq!(first.topic(), "landing");
    let (first, second) = (first.delivered().await?, second.delivered().await?);
    assert_eq!(second.offset, first.offset + 1);
    Ok(())
}

/// Forwards each order as it came, then sends a note about it with every option set.
#[faust::agent(topic = "incoming-orders")]
async fn route_orders(mut orders: Stream<serde_json::Value>) -> faust::Result<()> {
    while let Some(order) = orders.next().await {
        orders.forward("routed-orders").await?;
        faust::Outgoing::to("order-notes")
            .key(&"note")
            .partition(3)
            .header("trace-id", "7f3a")
            .timestamp_ms(1_700_000_000_000)
            .send(&order["id"])
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_event_is_forwarded_as_it_came_and_a_message_carries_what_it_was_given(
) -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    let headers = [("origin", "web")];
    ctx.run(async {
        let mut outgoing = faust::Outgoing::to("incoming-orders").key(&"alice");
        for (name, value) in headers {
            outgoing = outgoing.header(name, value);
        }
        outgoing.send(&serde_json::json!({ "id": 7 })).await
    })
    .await??;
    let incoming = ctx.sent("incoming-orders");
    let routed = ctx.sent("routed-orders");
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].key.as_deref(), Some(&b"alice"[..]));
    assert_eq!(routed[0].value, incoming[0].value);
    // Its headers, and the origin of the copy (README, "Processing guarantees").
    let (copied, origin) = routed[0].headers.split_at(incoming[0].headers.len());
    assert_eq!(copied, incoming[0].headers);
    assert_eq!(copied[0].key, "origin");
    let origin: Vec<_> = origin.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(origin, ["faust-origin"]);

    let notes = ctx.sent("order-notes");
    assert_eq!(notes.len(), 1);
    let note = &notes[0];
    assert_eq!(
        (note.key.as_deref(), note.partition, note.timestamp),
        (Some(&b"note"[..]), 3, Some(1_700_000_000_000))
    );
    assert_eq!(note.value.as_deref(), Some(&b"7"[..]));
    assert_eq!(note.headers[0].key, "trace-id");
    assert_eq!(note.headers[0].value.as_deref(), Some(&b"7f3a"[..]));
    Ok(())
}

/// Sinks to the agent `shout` by its name.
#[faust::agent(topic = "to-shout", sink = "shout")]
async fn relay_to_shout(mut values: Stream<String>, out: Sink<String>) -> faust::Result<()> {
    while let Some(value) = values.next().await {
        out.send(&value.to_uppercase()).await?;
    }
    Ok(())
}

/// Reads its own topic, `test-app-shout`, and reports what it got.
#[faust::agent]
async fn shout(mut values: Stream<String>) -> faust::Result<()> {
    while let Some(value) = values.next().await {
        faust::send("shouted", None::<&str>, &format!("{value}!")).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_sink_that_names_an_agent_writes_that_agents_topic() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    ctx.send("to-shout", None::<&str>, "hey").await?;
    let sunk: Vec<String> = ctx.sent_json("test-app-shout")?;
    assert_eq!(sunk, ["HEY"]);
    assert!(
        ctx.sent("shout").is_empty(),
        "not a topic named after the agent"
    );
    let shouted: Vec<String> = ctx.sent_json("shouted")?;
    assert_eq!(shouted, ["HEY!"]);
    Ok(())
}

/// user -> events in each event's own window, from 5 s before it to 5 s after.
#[faust::table(
    name = "around",
    default = 0,
    sliding = "5s",
    after = "5s",
    expires = "1m"
)]
static AROUND: WindowedTable<String, u64>;

#[faust::agent(topic = "logins")]
async fn logins(mut users: Stream<String>) -> faust::Result<()> {
    while let Some(user) = users.next().await {
        AROUND.update(&user, |n| *n += 1)?;
    }
    Ok(())
}

#[tokio::test]
async fn a_sliding_window_is_the_span_around_each_event() -> faust::Result<()> {
    let mut ctx = TestContext::new().await?;
    let user = "ann".to_owned();
    for at in [100_000, 100_000, 102_500] {
        ctx.send_at("logins", Some(&user), &user, at).await?;
    }
    // As Faust's SlidingWindow(5, 5): [t - 5 s, t + 5 s] per event time t; events at
    // the same time share a window.
    let windows = AROUND.windows(&user)?;
    assert_eq!(
        windows,
        [
            (
                Window {
                    start: 95_000,
                    end: 105_000
                },
                2
            ),
            (
                Window {
                    start: 97_500,
                    end: 107_500
                },
                1
            )
        ]
    );
    assert_eq!(AROUND.at(&user, 102_500)?, 1);
    Ok(())
}
