//! Python Faust's `examples/tableofset.py`: who is where, in a table of sets.
//!
//! ```sh
//! cargo run --example tableofset -- worker                     # embedded broker
//! cargo run --example tableofset -- joining office alice --broker kafka://localhost:9092
//! cargo run --example tableofset -- leaving office alice --broker kafka://localhost:9092
//! ```
//!
//! People join and leave places: `people_joining2` and `people_leaving2` carry the
//! place as the key (raw text) and the person as the value (a JSON string), as Faust's
//! `key_type=str, value_type=str` topics do. The table `people` maps each place to the
//! set of people there; every 10 seconds the worker prints the places it holds. The app
//! id is Faust's `table-of-sets-windowed` with its `version=2` suffix, so the two share
//! the consumer group and the changelog's name (not its records: Faust's are single
//! operations, see [`faust::SetTable`]).

use faust::{clap, prelude::*};

/// place -> the people there.
#[faust::table(name = "people")]
static PEOPLE: SetTable<String, String>;

/// Someone joined a place.
#[faust::agent(topic = "people_joining2")]
async fn join(mut joins: Stream<String>) -> faust::Result<()> {
    while let Some(event) = joins.next_event().await {
        let Some(place) = event.decode_key::<String>()? else {
            continue; // a join must say where
        };
        println!("- {} joined {place}", capitalized(&event.value));
        PEOPLE.add(&place, event.value)?;
        println!("TABLE CUR: {place} {:?}", PEOPLE.get(&place)?);
    }
    Ok(())
}

/// Someone left a place.
#[faust::agent(topic = "people_leaving2")]
async fn leave(mut leaves: Stream<String>) -> faust::Result<()> {
    while let Some(event) = leaves.next_event().await {
        let Some(place) = event.decode_key::<String>()? else {
            continue;
        };
        println!("- {} left {place}", capitalized(&event.value));
        PEOPLE.discard(&place, &event.value)?;
        println!("TABLE CUR: {place} {:?}", PEOPLE.get(&place)?);
    }
    Ok(())
}

/// Who came or went where: the commands' arguments (Faust's `argument('location')`,
/// `argument('name')`).
#[derive(clap::Args)]
struct Visit {
    /// The place
    place: String,
    /// Who
    name: String,
}

/// Sends a join: `joining PLACE NAME`.
#[faust::command]
async fn joining(visit: Visit) -> faust::Result<()> {
    faust::send("people_joining2", Some(&visit.place), &visit.name).await?;
    Ok(())
}

/// Sends a leave: `leaving PLACE NAME`.
#[faust::command]
async fn leaving(visit: Visit) -> faust::Result<()> {
    faust::send("people_leaving2", Some(&visit.place), &visit.name).await?;
    Ok(())
}

/// Prints the places this worker holds.
#[faust::timer(interval = "10s")]
async fn dump() -> faust::Result<()> {
    let mut places = PEOPLE.local_keys()?;
    places.sort();
    println!("TABLE NOW:");
    for place in places {
        println!("  {place}: {:?}", PEOPLE.get(&place)?);
    }
    Ok(())
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

faust::main!(id = "table-of-sets-windowed-v2", partitions = 4);

/// The agents, run in-process by faust's test context: no broker needed.
#[cfg(test)]
mod tests {
    use super::*;
    use faust::testing::TestContext;
    use std::collections::BTreeSet;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn people_join_and_leave_their_places() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let office = "office".to_owned();
        for name in ["alice", "bob", "carol"] {
            ctx.send("people_joining2", Some(&office), &name).await?;
        }
        ctx.send("people_joining2", Some("pub"), &"bob").await?;
        ctx.send("people_leaving2", Some(&office), &"bob").await?;
        // Leaving a place one is not at changes nothing.
        ctx.send("people_leaving2", Some("pub"), &"carol").await?;
        assert_eq!(PEOPLE.get(&office)?, set(&["alice", "carol"]));
        assert_eq!(PEOPLE.get(&"pub".to_owned())?, set(&["bob"]));
        assert!(PEOPLE.contains(&office, &"alice".to_owned())?);

        // The last one out empties the place: it is gone from the table.
        ctx.send("people_leaving2", Some("pub"), &"bob").await?;
        assert_eq!(PEOPLE.get(&"pub".to_owned())?, set(&[]));
        let mut places = PEOPLE.local_keys()?;
        places.sort();
        assert_eq!(places, ["office"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_join_without_a_place_is_skipped() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.send("people_joining2", None::<&str>, &"dave").await?;
        ctx.send("people_joining2", Some("office"), &"erin").await?;
        assert_eq!(PEOPLE.local_keys()?, ["office"]);
        Ok(())
    }
}
