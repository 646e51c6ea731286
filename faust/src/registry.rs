//! The compile-time registry: `#[faust::agent]`, `#[faust::table]`, `#[faust::task]`,
//! `#[faust::timer]`, `#[faust::crontab]` and `#[faust::command]` each submit a constant descriptor through `inventory`; at start the
//! app collects them here, sorted by name, with duplicates rejected.

use crate::{
    agents::AgentDescriptor,
    descriptor::{
        CommandDescriptor, PageDescriptor, TableDescriptor, TaskDescriptor, TimerDescriptor,
        BUILTIN_COMMANDS,
    },
    Error, Result,
};

/// Everything the macros registered in this binary.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    pub(crate) agents: Vec<&'static AgentDescriptor>,
    pub(crate) tables: Vec<&'static TableDescriptor>,
    pub(crate) tasks: Vec<&'static TaskDescriptor>,
    pub(crate) timers: Vec<&'static TimerDescriptor>,
    pub(crate) commands: Vec<&'static CommandDescriptor>,
    pub(crate) pages: Vec<&'static PageDescriptor>,
}

impl Registry {
    /// Collects what the macros submitted in this binary.
    pub(crate) fn collect() -> Result<Registry> {
        let mut registry = Registry::from_parts(
            inventory::iter::<AgentDescriptor>().collect(),
            inventory::iter::<TableDescriptor>().collect(),
            inventory::iter::<TaskDescriptor>().collect(),
            inventory::iter::<TimerDescriptor>().collect(),
            inventory::iter::<CommandDescriptor>().collect(),
        )?;
        registry.pages = inventory::iter::<PageDescriptor>().collect();
        registry.pages.sort_by_key(|p| (p.path, p.method));
        Ok(registry)
    }

    /// Sorts each kind by name, rejects duplicate names and invalid timer schedules.
    pub(crate) fn from_parts(
        mut agents: Vec<&'static AgentDescriptor>,
        mut tables: Vec<&'static TableDescriptor>,
        mut tasks: Vec<&'static TaskDescriptor>,
        mut timers: Vec<&'static TimerDescriptor>,
        mut commands: Vec<&'static CommandDescriptor>,
    ) -> Result<Registry> {
        agents.sort_by_key(|a| a.name);
        tables.sort_by_key(|t| t.name);
        tasks.sort_by_key(|t| t.name);
        timers.sort_by_key(|t| t.name);
        commands.sort_by_key(|c| c.name);
        reject_duplicates("agents", agents.iter().map(|a| (a.name, a.location)))?;
        reject_duplicates("tables", tables.iter().map(|t| (t.name, t.location)))?;
        reject_duplicates("tasks", tasks.iter().map(|t| (t.name, t.location)))?;
        reject_duplicates("timers", timers.iter().map(|t| (t.name, t.location)))?;
        reject_duplicates("commands", commands.iter().map(|c| (c.name, c.location)))?;
        if let Some(problem) = timers.iter().find_map(|t| t.check().err()) {
            return Err(Error::Registry(problem));
        }
        if let Some(c) = commands.iter().find(|c| BUILTIN_COMMANDS.contains(&c.name)) {
            return Err(Error::Registry(format!(
                "the command '{}' ({}) has the name of a built-in command; rename it with `name = \"...\"`",
                c.name, c.location
            )));
        }
        Ok(Registry {
            agents,
            tables,
            tasks,
            timers,
            commands,
            pages: Vec::new(),
        })
    }

    /// A worker with nothing to run is a mistake; say the likely one.
    pub(crate) fn ensure_runnable(&self) -> Result<()> {
        if self.agents.is_empty() && self.tasks.is_empty() && self.timers.is_empty() {
            return Err(Error::Registry(
                "no agents or tasks are registered, so the worker has nothing to run. Declare one \
                 with #[faust::agent(topic = \"...\")]. If you did, the crate that declares it is \
                 probably never referenced by this binary, so the linker dropped it: call \
                 something from that crate in main, or move the agents into the binary crate"
                    .into(),
            ));
        }
        Ok(())
    }

    /// An agent that dead-letters the events it fails on needs somewhere to put them.
    pub(crate) fn check_dead_letters(&self, dead_letter_topic: Option<&str>) -> Result<()> {
        let needing = self
            .agents
            .iter()
            .find(|a| a.on_error == crate::agents::OnError::DeadLetter);
        match (needing, dead_letter_topic) {
            (Some(agent), None) => Err(Error::Registry(format!(
                "agent '{}' ({}) dead-letters the events it fails on (on_error = \"dead_letter\"), \
                 but the app has no dead-letter topic: set one (--dead-letter-topic, \
                 FAUST_DEAD_LETTER_TOPIC, or AppBuilder::dead_letter_topic)",
                agent.name, agent.location
            ))),
            _ => Ok(()),
        }
    }
}

fn reject_duplicates<'a>(
    kind: &str,
    sorted: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    let mut previous: Option<(&str, &str)> = None;
    for (name, location) in sorted {
        if let Some((prev_name, prev_location)) = previous {
            if prev_name == name {
                return Err(Error::Registry(format!(
                    "two {kind} are named '{name}' ({prev_location} and {location}); give one of \
                     them another name with `name = \"...\"`"
                )));
            }
        }
        previous = Some((name, location));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &'static str, location: &'static str) -> &'static TaskDescriptor {
        Box::leak(Box::new(TaskDescriptor {
            name,
            location,
            on_leader: false,
            run: || Box::pin(async { Ok(()) }),
        }))
    }

    #[test]
    fn sorts_and_rejects_duplicates() {
        let registry = Registry::from_parts(
            vec![],
            vec![],
            vec![task("b", "b.rs:1"), task("a", "a.rs:1")],
            vec![],
            vec![],
        )
        .unwrap();
        let names: Vec<_> = registry.tasks.iter().map(|t| t.name).collect();
        assert_eq!(names, ["a", "b"]);

        let err = Registry::from_parts(
            vec![],
            vec![],
            vec![
                task("x", "one.rs:1"),
                task("y", "y.rs:1"),
                task("x", "two.rs:9"),
            ],
            vec![],
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("two tasks are named 'x'"), "{err}");
        assert!(
            err.contains("one.rs:1") && err.contains("two.rs:9"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_registry_is_explained() {
        let err = Registry::default()
            .ensure_runnable()
            .unwrap_err()
            .to_string();
        assert!(err.contains("linker"), "{err}");
    }
}
