//! `sanity run`'s loop over the plans of a config (one, or a `[sweep]`'s points): where each
//! run goes, the model cache it shares, the shard of image batches it takes.

use sanity_experiments::model_cache::ModelCache;
use sanity_experiments::run::batch_count;
use sanity_experiments::{Plan, Progress, RunOptions, RunOutcome, placement, run};
use sanity_rundir::error::Result;
use sanity_rundir::shard::Shard;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// How the plans run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The run directory of a single plan, or the folder of a sweep's run directories; None:
    /// `results/NAME/RUN_ID`.
    pub out: Option<PathBuf>,
    /// Replace the results of an existing run directory.
    pub force: bool,
    /// Continue interrupted runs.
    pub resume: bool,
    /// Share trained models through the model cache.
    pub model_cache: bool,
    /// Run only this shard of the image batches of all runs.
    pub shard: Option<Shard>,
    /// Worker threads, recorded in the manifests.
    pub threads: usize,
    /// Set to stop after the image batch or training epoch in flight.
    pub interrupt: Option<&'static AtomicBool>,
}

/// What the loop tells its caller, in order.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The shard has no work at all: the line says which shards do.
    NothingToDo(String),
    /// A run starts.
    Started,
    /// The run in flight progressed.
    Progress(Progress),
    /// A run finished.
    Finished(&'a RunOutcome),
}

/// Runs every plan in order (those with batches in the shard), each in its directory.
pub fn run_plans(plans: &[Plan], request: &RunRequest, on: &mut dyn FnMut(RunEvent)) -> Result<Vec<RunOutcome>> {
    let counts: Vec<usize> = plans.iter().map(batch_count).collect();
    let units: usize = counts.iter().sum();
    if let Some(Shard { index: k, count: n }) = request.shard
        && k >= units
    {
        // A job array may be wider than the work: this task has none, and says so.
        on(RunEvent::NothingToDo(format!(
            "shard {k}/{n}: nothing to do; the runs have {units} units of work (image batches), taken by shards 0 to {}",
            units.min(n) - 1
        )));
        return Ok(Vec::new());
    }
    let single = plans.len() == 1;
    let selections = request.shard.map(|s| s.select(&counts));
    let mut outcomes = Vec::with_capacity(plans.len());
    for (r, plan) in plans.iter().enumerate() {
        let selected = selections.as_ref().map(|s| s[r].clone());
        if selected.as_ref().is_some_and(BTreeSet::is_empty) {
            continue; // Nothing of this run in this shard.
        }
        let out = request.out.as_deref();
        let run_dir = placement::run_dir(out, single, plan);
        on(RunEvent::Started);
        let cache_dir = placement::model_cache_dir(out, &plan.config.name);
        let options = RunOptions {
            resume: request.resume,
            batches: selected,
            shard: request.shard,
            model_cache: request.model_cache.then(|| ModelCache::new(&cache_dir)),
            interrupt: request.interrupt,
            ..RunOptions::new(run_dir, request.force, request.threads)
        };
        let outcome = run(plan, &options, &mut |p| on(RunEvent::Progress(p)))?;
        on(RunEvent::Finished(&outcome));
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
