//! Scenario scripts: the simulated cluster driven step by step from a small
//! text format, with the output of each step written under it, so a reader
//! sees what the cluster does without reading Rust (toydb's goldenscripts
//! are the model). Each file in `node/tests/scripts/` is a script; the test
//! runs it and compares the whole transcript with the file.
//! `UPDATE_SCRIPTS=1` rewrites the files with what the run printed (review
//! the diff before committing it).
//!
//! A line `> COMMAND` is a step; the lines under it, up to the next step or
//! comment, are its output (regenerated on every run). Lines starting with
//! `#` and blank lines are kept as written. Nodes are numbered from 0; node
//! `i` is `sim{i}@sim`. The steps:
//!
//! - `nodes N [ring=R] [seed=S]`: starts N nodes, each alone (first step).
//! - `join I J`: node I joins node J's cluster.
//! - `leave I`, `force-remove I`, `replace I J`, `force-replace I J`:
//!   stages the change on the claimant (J replaces I).
//! - `down I [from=J]`: marks I down, as node J (default: the observer).
//! - `plan`, `commit`: the claimant plans / commits what is staged.
//! - `settle`: waits until every member agrees and no transfer runs.
//! - `add N [from=I]`: N adds one after another; `load N [from=I]`: N adds
//!   in the background, one every 20 ms; `wait`: waits for them.
//! - `stats [from=I]`, `status [from=I]`, `owners`, `data`: what the cluster
//!   counts, its members as node I sees them, partitions per owner, and the
//!   counts each node's store holds.
//! - `check`: the simulator's invariants, with the counts of every add so far.
//! - `crash I`, `restart I`, `crash-on HOOK I` (HOOK: `sender-at-item`,
//!   `sender-at-finish`, `receiver-before-ack`, `receiver-after-ack`: node I
//!   crashes at that point of its next handoff).
//! - `cut I J` (one way), `isolate I` (from everyone, both ways), `heal`
//!   (also disarms hooks that have not fired).
//! - `sleep D` (`500ms`, `3s`): simulated time passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flavio_node::app::Flavio;
use flavio_node::cluster::Change;
use flavio_node::ring::PartitionId;

use crate::harness::Harness;
use crate::net::{Hook, Net};

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct Runner {
    h: Option<Harness>,
    net: Arc<Net>,
    dir: PathBuf,
    /// Every add so far, for `check`.
    all: Arc<Counts>,
    /// The background load since the last `wait`.
    load: Arc<Counts>,
    loads: Vec<tokio::task::JoinHandle<()>>,
    stale: Vec<usize>,
    lost: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|e| e.to_string());
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs
            .parse()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string());
    }
    Err(format!("{s}: a duration is 500ms or 3s"))
}

/// Positional words and `key=value` options of a step.
struct Args<'a> {
    words: Vec<&'a str>,
    opts: BTreeMap<&'a str, &'a str>,
}

impl<'a> Args<'a> {
    fn parse(line: &'a str) -> Args<'a> {
        let mut words = Vec::new();
        let mut opts = BTreeMap::new();
        for w in line.split_whitespace() {
            match w.split_once('=') {
                Some((k, v)) => {
                    opts.insert(k, v);
                }
                None => words.push(w),
            }
        }
        Args { words, opts }
    }

    fn node(&self, i: usize) -> Result<usize, String> {
        self.words
            .get(i)
            .ok_or_else(|| format!("step needs a node number at position {i}"))?
            .parse()
            .map_err(|e| format!("node number: {e}"))
    }

    fn num(&self, i: usize) -> Result<u64, String> {
        self.words
            .get(i)
            .ok_or_else(|| format!("step needs a number at position {i}"))?
            .parse()
            .map_err(|e| format!("number: {e}"))
    }

    fn opt(&self, k: &str) -> Result<Option<u64>, String> {
        self.opts
            .get(k)
            .map(|v| v.parse().map_err(|e| format!("{k}: {e}")))
            .transpose()
    }
}

impl Runner {
    fn h(&self) -> Result<&Harness, String> {
        self.h.as_ref().ok_or_else(|| "start with 'nodes N'".into())
    }

    fn h_mut(&mut self) -> Result<&mut Harness, String> {
        self.h.as_mut().ok_or_else(|| "start with 'nodes N'".into())
    }

    /// The node a client step runs on: `from=I`, else the first running member.
    fn client(&self, args: &Args) -> Result<usize, String> {
        match args.opt("from")? {
            Some(i) => Ok(i as usize),
            None => self
                .h()?
                .running_members()
                .first()
                .copied()
                .ok_or_else(|| "no member runs".into()),
        }
    }

    /// The client node of a step and its app.
    fn client_app(&self, args: &Args) -> Result<(usize, Flavio), String> {
        let from = self.client(args)?;
        let app = self
            .h()?
            .app(from)
            .cloned()
            .ok_or(format!("node {from} is not running"))?;
        Ok((from, app))
    }

    /// The node a membership step runs on: `from=N`, else the claimant.
    fn at(&self, args: &Args) -> Result<usize, String> {
        match args.opt("from")? {
            Some(f) => Ok(f as usize),
            None => self
                .h()?
                .claimant()
                .ok_or("the claimant is not running".into()),
        }
    }

    fn name(&self, i: usize) -> Result<String, String> {
        self.h()?
            .nodes
            .get(i)
            .map(|n| n.name.clone())
            .ok_or_else(|| format!("no node {i}"))
    }

    async fn step(&mut self, line: &str) -> Result<Vec<String>, String> {
        let args = Args::parse(line);
        let Some(&cmd) = args.words.first() else {
            return Err("empty step".into());
        };
        let staged = |r: Result<String, String>| match r {
            Ok(s) => vec![s],
            Err(e) => vec![format!("error: {e}")],
        };
        Ok(match cmd {
            "nodes" => {
                let n = args.num(1)? as usize;
                let ring = args.opt("ring")?.unwrap_or(16);
                let seed = args.opt("seed")?.unwrap_or(1);
                self.h = Some(Harness::new(Arc::clone(&self.net), &self.dir, n, ring, seed).await?);
                vec![format!("{n} nodes, ring {ring}")]
            }
            "join" => {
                let (i, j) = (args.node(1)?, args.node(2)?);
                let h = self.h()?;
                let c = h.cluster(i).ok_or(format!("node {i} is not running"))?;
                match c.join(&h.nodes[j].addr).await {
                    Ok(s) => {
                        self.stale.retain(|x| *x != i);
                        vec![s]
                    }
                    Err(e) => vec![format!("error: {e}")],
                }
            }
            "leave" => {
                let at = self.at(&args)?;
                let change = Change::Leave(self.name(args.node(1)?)?);
                staged(self.h()?.stage_on(at, change).await)
            }
            "force-remove" => {
                let i = args.node(1)?;
                let at = self.at(&args)?;
                let r = self
                    .h()?
                    .stage_on(at, Change::ForceRemove(self.name(i)?))
                    .await;
                self.forced(i, &r)?;
                staged(r)
            }
            "replace" | "force-replace" => {
                let (i, j) = (args.node(1)?, args.node(2)?);
                let (old, new) = (self.name(i)?, self.name(j)?);
                let change = if cmd == "replace" {
                    Change::Replace { old, new }
                } else {
                    Change::ForceReplace { old, new }
                };
                let at = self.at(&args)?;
                let r = self.h()?.stage_on(at, change).await;
                if cmd == "force-replace" {
                    self.forced(i, &r)?;
                }
                staged(r)
            }
            "down" => {
                let i = args.node(1)?;
                let h = self.h()?;
                let from = match args.opt("from")? {
                    Some(f) => f as usize,
                    None => h.observer().ok_or("no node runs")?,
                };
                let c = h
                    .cluster(from)
                    .ok_or(format!("node {from} is not running"))?;
                // without-majority=1: as `flavio admin down --without-majority`.
                let forced = args.opt("without-majority")?.is_some_and(|v| v == 1);
                staged(
                    c.down(&self.name(i)?, forced)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            "plan" => {
                let c = self.at(&args)?;
                let h = self.h()?;
                let cluster = h.cluster(c).ok_or(format!("node {c} is not running"))?;
                match cluster.plan().await {
                    Ok((None, _)) => vec!["There are no staged changes".into()],
                    Ok((Some(plan), _)) => {
                        let mut out: Vec<String> = plan
                            .changes
                            .iter()
                            .map(|c| match c.new_node() {
                                Some(n) => format!("{} {} by {n}", c.action(), c.node()),
                                None => format!("{} {}", c.action(), c.node()),
                            })
                            .collect();
                        out.push(format!("{} transfers", plan.result.pending.len()));
                        out.extend(plan.warnings.iter().map(|w| format!("warning: {w}")));
                        out
                    }
                    Err(e) => vec![format!("error: {e}")],
                }
            }
            "commit" => match self.h()?.commit_on(self.at(&args)?).await {
                Ok(Some(_)) => vec!["committed".into()],
                Ok(None) => vec!["nothing to commit".into()],
                Err(e) => vec![format!("error: {e}")],
            },
            "settle" => match self.h()?.settle(Duration::from_secs(300)).await {
                Ok(_) => vec!["settled".into()],
                Err(e) => vec![format!("error: {e}")],
            },
            "add" => {
                let n = args.num(1)?;
                let (_, app) = self.client_app(&args)?;
                let (mut ok, mut errors) = (0, BTreeMap::<String, u64>::new());
                for k in 0..n {
                    let opts = crate::harness::add_options();
                    match app.add(k as i64, 1, opts).await {
                        Ok(_) => {
                            ok += 1;
                            self.all.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // One line per kind of failure, not per replica.
                            let e = e.to_string();
                            let kind = e.split(';').next().unwrap_or(&e).to_string();
                            *errors.entry(kind).or_default() += 1;
                            self.all.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let mut out = vec![format!("{ok} of {n} acknowledged")];
                out.extend(errors.iter().map(|(e, k)| format!("{k} failed: {e}")));
                out
            }
            "load" => {
                let n = args.num(1)?;
                let (from, app) = self.client_app(&args)?;
                let (all, load) = (Arc::clone(&self.all), Arc::clone(&self.load));
                self.loads.push(tokio::spawn(async move {
                    let mut tasks = Vec::new();
                    for k in 0..n {
                        let (app, all, load) = (app.clone(), Arc::clone(&all), Arc::clone(&load));
                        tasks.push(tokio::spawn(async move {
                            let opts = crate::harness::add_options();
                            let ok = app.add(k as i64, 2, opts).await.is_ok();
                            for c in [&all, &load] {
                                let n = if ok { &c.ok } else { &c.failed };
                                n.fetch_add(1, Ordering::Relaxed);
                            }
                        }));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                }));
                vec![format!("{n} adds from node {from} in the background")]
            }
            "wait" => {
                for t in self.loads.drain(..) {
                    let _ = t.await;
                }
                let ok = self.load.ok.swap(0, Ordering::Relaxed);
                let failed = self.load.failed.swap(0, Ordering::Relaxed);
                vec![format!("load: {ok} acknowledged, {failed} failed")]
            }
            "stats" => {
                let (_, app) = self.client_app(&args)?;
                let s = app.stats(Some(Duration::from_secs(10))).await;
                vec![format!(
                    "total {}{}",
                    s.total_ops,
                    if s.partial { " (partial)" } else { "" }
                )]
            }
            "status" => {
                let h = self.h()?;
                let from = match args.opt("from")? {
                    Some(f) => f as usize,
                    None => h.observer().ok_or("no node runs")?,
                };
                let c = h
                    .cluster(from)
                    .ok_or(format!("node {from} is not running"))?;
                let ring = c.ring().ring.clone();
                let size = ring.owners.len() as f64;
                let mut out = Vec::new();
                for (name, m) in &ring.members {
                    let owned = ring.owned_by(name).len() as f64;
                    let claimant = if *name == ring.claimant {
                        " (claimant)"
                    } else {
                        ""
                    };
                    out.push(format!(
                        "{:<8} {:>5.1}%  {name}{claimant}",
                        format!("{:?}", m.state).to_lowercase(),
                        100.0 * owned / size
                    ));
                }
                if !ring.pending.is_empty() {
                    out.push(format!("{} transfers pending", ring.pending.len()));
                }
                out
            }
            "owners" => {
                let ring = self.h()?.ring().ok_or("no node runs")?;
                let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
                for (p, o) in ring.owners.owners() {
                    by.entry(o).or_default().push(p.0 as usize);
                }
                by.iter().map(|(o, ps)| format!("{o}: {ps:?}")).collect()
            }
            "data" => {
                let h = self.h()?;
                let mut out = Vec::new();
                for (i, n) in h.nodes.iter().enumerate() {
                    let held: Vec<String> = (0..h.ring_size.get())
                        .filter(|p| n.disk.has_data(PartitionId(*p)))
                        .map(|p| format!("{p}={}", h.stored_count(i, PartitionId(p))))
                        .collect();
                    let total: u64 = (0..h.ring_size.get())
                        .map(|p| h.stored_count(i, PartitionId(p)))
                        .sum();
                    out.push(format!("node {i}: total {total}  {}", held.join(" ")));
                }
                out
            }
            "check" => {
                let h = self.h()?;
                h.check_structure(&self.stale)?;
                let from = *h.running_members().first().ok_or("no member runs")?;
                let app = h.app(from).cloned().ok_or("no member runs")?;
                let s = app.stats(Some(Duration::from_secs(10))).await;
                let ok = self.all.ok.load(Ordering::Relaxed);
                let failed = self.all.failed.load(Ordering::Relaxed);
                let low = (3 * ok).saturating_sub(self.lost);
                if s.partial || s.total_ops < low || s.total_ops > 3 * (ok + failed) {
                    return Err(format!(
                        "check failed: stats total {}{}, {ok} adds acknowledged, {failed} failed, \
                         {} dropped by force-removes",
                        s.total_ops,
                        if s.partial { " (partial)" } else { "" },
                        self.lost
                    ));
                }
                vec![format!(
                    "invariants hold: total {} for {ok} acknowledged and {failed} failed adds{}",
                    s.total_ops,
                    if self.lost > 0 {
                        format!(", {} dropped by force-removes", self.lost)
                    } else {
                        String::new()
                    }
                )]
            }
            "crash" => {
                let i = args.node(1)?;
                self.h_mut()?.crash(i);
                vec![format!("node {i} crashed")]
            }
            "restart" => {
                let i = args.node(1)?;
                self.h_mut()?.start(i).await?;
                vec![format!("node {i} restarted")]
            }
            "crash-on" => {
                let hook = match args.words.get(1).copied() {
                    Some("sender-at-item") => Hook::SenderAtItem,
                    Some("sender-at-finish") => Hook::SenderAtFinish,
                    Some("receiver-before-ack") => Hook::ReceiverBeforeAck,
                    Some("receiver-after-ack") => Hook::ReceiverAfterAck,
                    Some("hint-sender-at-send") => Hook::HintSenderAtSend,
                    Some("hint-receiver-before-ack") => Hook::HintReceiverBeforeAck,
                    Some("hint-sender-at-ack") => Hook::HintSenderAtAck,
                    other => return Err(format!("unknown hook {other:?}")),
                };
                let i = args.node(2)?;
                let addr = self.h()?.nodes[i].addr.clone();
                self.net.arm(hook, &addr);
                vec![format!("node {i} will crash at {hook:?}")]
            }
            "cut" => {
                let (i, j) = (args.node(1)?, args.node(2)?);
                let h = self.h()?;
                let (a, b) = (h.nodes[i].addr.clone(), h.nodes[j].addr.clone());
                self.net.faults().cut.insert((a, b));
                vec![format!("{i} -> {j} cut")]
            }
            "isolate" => {
                let i = args.node(1)?;
                let h = self.h()?;
                let me = h.nodes[i].addr.clone();
                let mut f = self.net.faults();
                for n in &h.nodes {
                    if n.addr != me {
                        f.cut.insert((me.clone(), n.addr.clone()));
                        f.cut.insert((n.addr.clone(), me.clone()));
                    }
                }
                vec![format!("node {i} isolated")]
            }
            "split" => {
                // split 0 1 / 2 3 4: every link between the two groups cut.
                let h = self.h()?;
                let mut groups: Vec<Vec<String>> = vec![Vec::new()];
                for w in &args.words[1..] {
                    if *w == "/" {
                        groups.push(Vec::new());
                    } else {
                        let i: usize = w.parse().map_err(|_| format!("bad node {w:?}"))?;
                        let n = h.nodes.get(i).ok_or(format!("no node {i}"))?;
                        if let Some(g) = groups.last_mut() {
                            g.push(n.addr.clone());
                        }
                    }
                }
                let [a, b] = groups.as_slice() else {
                    return Err("split needs two groups: split 0 1 / 2 3 4".into());
                };
                let mut f = self.net.faults();
                for x in a {
                    for y in b {
                        f.cut.insert((x.clone(), y.clone()));
                        f.cut.insert((y.clone(), x.clone()));
                    }
                }
                vec![format!("split {}", args.words[1..].join(" "))]
            }
            "heal" => {
                self.net.heal();
                vec!["healed".into()]
            }
            "sleep" => {
                let d = parse_duration(args.words.get(1).copied().unwrap_or(""))?;
                tokio::time::sleep(d).await;
                vec![]
            }
            other => return Err(format!("unknown step '{other}'")),
        })
    }

    /// Notes what a force-remove or force-replace of node `i` drops.
    fn forced(&mut self, i: usize, staged: &Result<String, String>) -> Result<(), String> {
        if staged.is_ok() {
            self.lost += self.h()?.held_counts(i);
            self.stale.push(i);
        }
        Ok(())
    }
}

/// Runs the script in `text`; returns the transcript.
async fn run_script(net: Arc<Net>, dir: &Path, text: &str) -> Result<String, String> {
    let mut r = Runner {
        h: None,
        net,
        dir: dir.to_path_buf(),
        all: Arc::new(Counts::default()),
        load: Arc::new(Counts::default()),
        loads: Vec::new(),
        stale: Vec::new(),
        lost: 0,
    };
    let mut out = String::new();
    let mut in_output = false;
    for line in text.lines() {
        if let Some(step) = line.strip_prefix("> ") {
            out.push_str(line);
            out.push('\n');
            if let Some(h) = r.h.as_mut() {
                h.sync();
            }
            match r.step(step).await {
                Ok(lines) => {
                    for l in lines {
                        out.push_str(&l);
                        out.push('\n');
                    }
                }
                Err(e) => {
                    out.push_str(&format!("FAILED: {e}\n"));
                }
            }
            // Crashes the network's hooks caused during the step.
            for (hook, addr) in r.net.take_fired() {
                let i =
                    r.h.as_ref()
                        .and_then(|h| h.nodes.iter().position(|n| n.addr == addr));
                out.push_str(&format!(
                    "(node {} crashed at {hook:?})\n",
                    i.unwrap_or(usize::MAX)
                ));
            }
            in_output = true;
        } else if line.starts_with('#') || line.trim().is_empty() {
            in_output = false;
            out.push_str(line);
            out.push('\n');
        } else if !in_output {
            return Err(format!("a line that is no step, comment or output: {line}"));
        }
    }
    if let Some(h) = r.h.as_mut() {
        h.stop_all();
    }
    Ok(out)
}

#[test]
fn scenario_scripts_match_their_golden_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let update = std::env::var("UPDATE_SCRIPTS").is_ok_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scripts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "fewer than ten scenario scripts");
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("script");
        let got = crate::simulate(1, async |net, dir| run_script(net, dir, &text).await);
        match got {
            Ok(got) if got == text => {}
            Ok(got) if update => std::fs::write(f, got).expect("write script"),
            Ok(got) => failures.push(format!(
                "{}: the transcript differs (UPDATE_SCRIPTS=1 rewrites it):\n{}",
                f.display(),
                diff(&text, &got)
            )),
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The lines that differ, marked `-` (the file) and `+` (this run).
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut out = Vec::new();
    for k in 0..w.len().max(g.len()) {
        match (w.get(k), g.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    out.push(format!("  line {}: - {a}", k + 1));
                }
                if let Some(b) = b {
                    out.push(format!("  line {}: + {b}", k + 1));
                }
            }
        }
        if out.len() > 40 {
            break;
        }
    }
    out.join("\n")
}
