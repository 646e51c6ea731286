//! Python Faust's django example, Faust's part: the `accounts` agents. `add_account`
//! creates an account from a record and answers its id; `disable_account` turns an
//! account off and answers whether it is still active. They are asked like any agent
//! (`Agent::named("add_account").ask(&record)`), from a web handler, a command or
//! another agent.
//!
//! ```sh
//! cargo run --example django -- worker                 # embedded broker
//! cargo test --example django                          # its test, without a broker
//! ```
//!
//! What is Django's stays Django's: the models and the database. Faust's agents call
//! the Django ORM (`Account.objects.create(...)`); here `Accounts` stands in for the
//! database, and a real app calls its database client (sqlx, diesel, or the Django
//! app's HTTP API) in its place. How it is deployed follows Faust's two ways: a worker
//! of its own beside the web app (`cargo run --example django -- worker`, Faust's
//! `proj-faust worker`), or in one process with the web server (Faust's
//! `FaustLifespanMiddleware`), as `examples/fastapi_example.rs` does with
//! `build_from_env` and `Worker::handle`.

use std::sync::Mutex;

use faust::prelude::*;

/// Faust's `AccountRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountRecord {
    name: String,
    score: f64,
    active: bool,
}

/// An account as the database keeps it, with its primary key.
#[derive(Debug, Clone, PartialEq)]
struct Account {
    pk: u64,
    name: String,
    score: f64,
    active: bool,
}

/// The stand-in for Django's `Account.objects`.
#[derive(Default)]
struct Accounts(Mutex<Vec<Account>>);

impl Accounts {
    fn create(&self, record: AccountRecord) -> Account {
        let mut rows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let account = Account {
            pk: rows.len() as u64 + 1,
            name: record.name,
            score: record.score,
            active: record.active,
        };
        rows.push(account.clone());
        account
    }

    /// Sets `active` of the account `pk`; `None` if there is none.
    fn set_active(&self, pk: u64, active: bool) -> Option<Account> {
        let mut rows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let account = rows.iter_mut().find(|a| a.pk == pk)?;
        account.active = active;
        Some(account.clone())
    }

    #[cfg(test)]
    fn get(&self, pk: u64) -> Option<Account> {
        let rows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter().find(|a| a.pk == pk).cloned()
    }
}

static ACCOUNTS: std::sync::LazyLock<Accounts> = std::sync::LazyLock::new(Accounts::default);

/// Creates an account; answers its primary key (Faust's `yield result.pk`).
#[faust::agent]
async fn add_account(mut accounts: Stream<AccountRecord>) -> faust::Result<()> {
    while let Some(record) = accounts.next().await {
        let account = ACCOUNTS.create(record);
        accounts.reply(&account.pk).await?;
    }
    Ok(())
}

/// Disables an account; answers whether it is active (Faust's `yield account.active`).
#[faust::agent]
async fn disable_account(mut account_ids: Stream<u64>) -> faust::Result<()> {
    while let Some(pk) = account_ids.next().await {
        // Django's `Account.objects.get` raises for a missing account: the agent's error.
        let account = ACCOUNTS
            .set_active(pk, false)
            .ok_or_else(|| faust::Error::msg(format!("no account {pk}")))?;
        account_ids.reply(&account.active).await?;
    }
    Ok(())
}

faust::main!(id = "django-proj");

/// The agents, asked in-process through faust's test context.
#[cfg(test)]
mod tests {
    use faust::{testing::TestContext, Agent};

    use super::*;

    #[tokio::test]
    async fn an_account_is_added_with_its_key_answered_then_disabled() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let record = AccountRecord {
            name: "Ada".to_owned(),
            score: 3.5,
            active: true,
        };
        let pk: u64 = ctx.run(Agent::named("add_account").ask(&record)).await??;
        let created = ACCOUNTS.get(pk).expect("the account exists");
        assert_eq!(
            (created.name.as_str(), created.score, created.active),
            ("Ada", 3.5, true)
        );

        let active: bool = ctx.run(Agent::named("disable_account").ask(&pk)).await??;
        assert!(!active);
        assert!(!ACCOUNTS.get(pk).expect("still there").active);
        Ok(())
    }

    #[tokio::test]
    async fn disabling_an_account_that_does_not_exist_fails_the_agent() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let asked = ctx
            .run(Agent::named("disable_account").ask::<_, bool>(&9_999u64))
            .await;
        let error = match asked {
            Err(e) | Ok(Err(e)) => e.to_string(),
            Ok(Ok(active)) => panic!("answered {active}"),
        };
        assert!(error.contains("no account 9999"), "{error}");
        Ok(())
    }
}
