//! Python Faust's bound_agent example: agents chained through in-memory channels. A
//! leader timer sends a few dozen device actions to a channel every 3 seconds; stage 1
//! passes each on to stage 2 through its sink (another channel), and each stage sends
//! what it fails on, with the stage's name, to a dead-letter channel whose agent logs it.
//! Which stage fails depends on the second (as in Faust's: `now % 3`).
//!
//! ```sh
//! cargo run --example bound_agent -- worker     # embedded broker
//! cargo test --example bound_agent              # its tests, without a broker
//! ```
//!
//! App id `bound-agent`; channels `device-actions`, `stage1-stage2` and `dead-letters`,
//! declared in `faust::main!` (Faust's `app.channel()`): agents read them, and `send`
//! and sinks write them, like topics, but nothing goes through the broker. Faust binds
//! its agents to channels with `functools.partial`; here an agent names its channel
//! as `topic`, and a stage's output is its `Sink`.

use faust::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeviceAction {
    device_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeadLetter {
    stage: String,
    record: DeviceAction,
}

const DEAD_LETTERS: &str = "dead-letters";

/// Fails in the seconds whose number modulo 3 is `phase` (Faust's `raise Exception("!!!")`).
fn flaky(phase: i64) -> std::result::Result<(), &'static str> {
    match faust::clock::now_ms() / 1000 % 3 == phase {
        true => Err("!!!"),
        false => Ok(()),
    }
}

/// Sends `action`, which `stage` failed on, to the dead letters.
async fn dead_letter(stage: &str, action: DeviceAction) -> faust::Result<()> {
    let letter = DeadLetter {
        stage: stage.to_owned(),
        record: action,
    };
    faust::send(DEAD_LETTERS, None::<&str>, &letter).await?;
    Ok(())
}

#[faust::agent(
    topic = "device-actions",
    name = "stage1-agent",
    sink = "stage1-stage2"
)]
async fn stage1_agent(
    mut actions: Stream<DeviceAction>,
    stage2: Sink<DeviceAction>,
) -> faust::Result<()> {
    while let Some(action) = actions.next().await {
        match flaky(0) {
            Ok(()) => {
                println!("[stage1] action arrived: {action:?}");
                stage2.send(&action).await?; // Faust's `yield action`, to the sink
            }
            Err(_) => dead_letter("stage1", action).await?,
        }
    }
    Ok(())
}

#[faust::agent(topic = "stage1-stage2", name = "stage2-agent")]
async fn stage2_agent(mut actions: Stream<DeviceAction>) -> faust::Result<()> {
    while let Some(action) = actions.next().await {
        match flaky(1) {
            Ok(()) => println!("[stage2] action arrived: {action:?}"),
            Err(_) => dead_letter("stage2", action).await?,
        }
    }
    Ok(())
}

#[faust::agent(topic = "dead-letters", name = "dead-letter-agent")]
async fn deadletter_agent(mut letters: Stream<DeadLetter>) -> faust::Result<()> {
    while let Some(letter) = letters.next().await {
        eprintln!("[dead letter] arrived: {letter:?}");
    }
    Ok(())
}

/// Every 3 seconds, on the leader: 3 to 100 actions, of devices 0, 1, 2, ...
#[faust::timer(interval = "3s", on_leader = true)]
async fn action_generator() -> faust::Result<()> {
    for i in 0..rand::random_range(3..101) {
        let action = DeviceAction {
            device_id: i.to_string(),
        };
        faust::send("device-actions", None::<&str>, &action).await?;
    }
    Ok(())
}

faust::main!(
    id = "bound-agent",
    channel = "device-actions",
    channel = "stage1-stage2",
    channel = DEAD_LETTERS
);

/// The stages, run in-process by faust's test context, at chosen seconds.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faust::testing::TestContext;

    use super::*;

    /// A context whose clock is at a second that is `phase` modulo 3, timer off.
    async fn at_phase(phase: i64) -> faust::Result<TestContext> {
        let mut ctx = TestContext::new().await?;
        ctx.disable_timer("action_generator")?;
        let now = faust::clock::now_ms();
        let next_second = now / 1000 + 1;
        let seconds = (phase - next_second).rem_euclid(3);
        let by = (next_second + seconds) * 1000 - now;
        ctx.advance(Duration::from_millis(by as u64)).await?;
        assert_eq!(faust::clock::now_ms() / 1000 % 3, phase);
        Ok(ctx)
    }

    fn actions(n: usize) -> Vec<DeviceAction> {
        (0..n)
            .map(|i| DeviceAction {
                device_id: i.to_string(),
            })
            .collect()
    }

    fn letters(stage: &str, actions: &[DeviceAction]) -> Vec<DeadLetter> {
        (actions.iter())
            .map(|action| DeadLetter {
                stage: stage.to_owned(),
                record: action.clone(),
            })
            .collect()
    }

    async fn send_all(ctx: &mut TestContext, actions: &[DeviceAction]) -> faust::Result<()> {
        for action in actions {
            ctx.send("device-actions", None::<&str>, action).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn in_a_quiet_second_every_action_passes_both_stages() -> faust::Result<()> {
        let mut ctx = at_phase(2).await?;
        send_all(&mut ctx, &actions(5)).await?;
        let passed: Vec<DeviceAction> = ctx.sent_json("stage1-stage2")?;
        assert_eq!(passed, actions(5));
        assert!(ctx.sent(DEAD_LETTERS).is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn sending_to_an_agent_by_name_reaches_the_channel_it_reads() -> faust::Result<()> {
        let mut ctx = at_phase(2).await?;
        let action = &actions(1)[0];
        ctx.run(faust::send("stage1-agent", None::<&str>, action))
            .await??;
        let sent: Vec<DeviceAction> = ctx.sent_json("device-actions")?;
        assert_eq!(sent, actions(1));
        let passed: Vec<DeviceAction> = ctx.sent_json("stage1-stage2")?;
        assert_eq!(passed, actions(1));
        Ok(())
    }

    #[tokio::test]
    async fn when_stage1_fails_its_actions_become_dead_letters_and_go_no_further(
    ) -> faust::Result<()> {
        let mut ctx = at_phase(0).await?;
        send_all(&mut ctx, &actions(4)).await?;
        assert!(ctx.sent("stage1-stage2").is_empty());
        let dead: Vec<DeadLetter> = ctx.sent_json(DEAD_LETTERS)?;
        assert_eq!(dead, letters("stage1", &actions(4)));
        Ok(())
    }

    #[tokio::test]
    async fn when_stage2_fails_the_actions_it_got_from_stage1_become_dead_letters(
    ) -> faust::Result<()> {
        let mut ctx = at_phase(1).await?;
        send_all(&mut ctx, &actions(3)).await?;
        let passed: Vec<DeviceAction> = ctx.sent_json("stage1-stage2")?;
        assert_eq!(passed, actions(3));
        let dead: Vec<DeadLetter> = ctx.sent_json(DEAD_LETTERS)?;
        assert_eq!(dead, letters("stage2", &actions(3)));
        Ok(())
    }

    #[tokio::test]
    async fn every_three_seconds_the_timer_sends_3_to_100_actions_and_each_is_accounted_for(
    ) -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(3)).await?;
        let sent: Vec<DeviceAction> = ctx.sent_json("device-actions")?;
        assert!((3..=100).contains(&sent.len()), "{}", sent.len());
        assert_eq!(sent, actions(sent.len()));
        // Each action either failed at a stage or passed stage 1.
        let passed: Vec<DeviceAction> = ctx.sent_json("stage1-stage2")?;
        let dead: Vec<DeadLetter> = ctx.sent_json(DEAD_LETTERS)?;
        let dead_at_1 = dead.iter().filter(|d| d.stage == "stage1").count();
        assert_eq!(passed.len() + dead_at_1, sent.len());
        Ok(())
    }
}
