//! Python Faust's task_queue example: a Celery-like task queue. A timer queues an `add`
//! task every second (`delay`), and the agent `process_task` runs each task and prints
//! its result.
//!
//! ```sh
//! cargo run --example task_queue -- worker     # embedded broker
//! cargo test --example task_queue              # its tests, without a broker
//! ```
//!
//! App id `faust-celery`; `process_task` reads `faust-celery-process_task`, each request
//! JSON as Faust writes it: `{"id": "…", "name": "add", "arguments": [1, 2],
//! "keyword_arguments": {}}`. Faust keeps a registry of task functions by name; here the
//! registry is an enum, so serde picks the task from `name` and checks its arguments.
//! Keyword arguments are read but not passed (`add` takes none).

use faust::prelude::*;
use serde_json::{Map, Value};

/// A task request, as queued on the topic.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// Correlation id, can be used to pass results back to the caller.
    id: String,
    /// The task and its positional arguments.
    #[serde(flatten)]
    task: Task,
    #[serde(default)]
    keyword_arguments: Map<String, Value>,
}

/// The registered tasks: `name` and `arguments` on the wire.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "name", content = "arguments", rename_all = "snake_case")]
enum Task {
    Add(i64, i64),
}

impl Task {
    async fn call(&self) -> faust::Result<Value> {
        match self {
            Task::Add(x, y) => Ok(add(*x, *y).await.into()),
        }
    }

    /// Queues the task for a worker.
    async fn delay(self) -> faust::Result<()> {
        let request = Request {
            id: format!("{:032x}", rand::random::<u128>()),
            task: self,
            keyword_arguments: Map::new(),
        };
        faust::send("process_task", None::<&str>, &request).await?;
        Ok(())
    }
}

async fn add(x: i64, y: i64) -> i64 {
    x + y
}

/// A "worker" stream processor that executes tasks.
#[faust::agent]
async fn process_task(mut tasks: Stream<Request>) -> faust::Result<()> {
    while let Some(request) = tasks.next().await {
        println!("Processing task: {request:?}");
        let result = request.task.call().await?;
        println!("Result of {} is: {result}", request.id);
    }
    Ok(())
}

/// Every second, queues an addition of two random numbers up to 100.
#[faust::timer(interval = "1s")]
async fn send_tasks() -> faust::Result<()> {
    Task::Add(rand::random_range(0..=100), rand::random_range(0..=100))
        .delay()
        .await
}

faust::main!(id = "faust-celery");

/// The timer and the agent, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn a_task_is_queued_every_second_and_runs() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(3)).await?;
        let queued: Vec<Request> = ctx.sent_json("faust-celery-process_task")?;
        assert_eq!(queued.len(), 3);
        for request in queued {
            let Task::Add(x, y) = request.task;
            assert!((0..=100).contains(&x) && (0..=100).contains(&y));
            assert_eq!(request.task.call().await?, Value::from(x + y));
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_request_as_python_faust_writes_it_runs() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.disable_timer("send_tasks")?;
        // What Faust's `add.delay(2, 3)` puts on the topic (a Record with its namespace).
        let python = serde_json::json!({
            "id": "5c2b1d0e-7a4f-4b83-9e3a-0b6f2d1c9a77",
            "name": "add",
            "arguments": [2, 3],
            "keyword_arguments": {},
            "__faust": {"ns": "__main__.Request"},
        });
        let request: Request = serde_json::from_value(python.clone())?;
        assert_eq!(request.task, Task::Add(2, 3));
        assert_eq!(request.task.call().await?, Value::from(5));
        ctx.send("process_task", None::<&str>, &python).await?;
        Ok(())
    }
}
