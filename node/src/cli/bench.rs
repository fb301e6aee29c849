//! `flavio bench`: bounded load against running nodes, reporting throughput
//! and HDR-histogram latencies. The streaming session keeps `--concurrency`
//! requests in flight per run; `--unary` makes one call per request instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use flavio_proto::v1 as pb;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{ClientArgs, Failure, Output};
use crate::rpc::Client;

/// Which operation to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// `ping`.
    Ping,
    /// `add` with operands that vary per request, so every partition is hit.
    Add,
    /// `stats` (a coverage request over every vnode).
    Stats,
}

/// Arguments of `flavio bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Operation to drive.
    #[arg(long, value_enum, default_value_t = Op::Ping)]
    op: Op,
    /// Requests in flight, spread evenly over the nodes.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// How long to run: `10s`, `500ms`, `2m` (at most 1h).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// One unary call per request instead of the streaming session.
    #[arg(long)]
    unary: bool,
    /// N for `add` (node default when omitted).
    #[arg(long)]
    n: Option<u32>,
    /// W for `add` (node default when omitted).
    #[arg(long)]
    w: Option<u32>,
    /// Also print the throughput of every interval of this length (e.g.
    /// `500ms`), to see it change while the cluster does something.
    #[arg(long, value_parser = parse_duration)]
    report_every: Option<Duration>,
    /// More node addresses to spread the load over (besides --node).
    #[arg(long = "also-node", value_name = "HOST:PORT")]
    also: Vec<String>,
    /// Also print the successes and errors of every second (always in the
    /// JSON output), to see an availability dip and how long it lasted.
    #[arg(long)]
    timeline: bool,
}

/// Successes and errors per second since the start, by completion time.
struct Timeline {
    start: Instant,
    ok: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
}

impl Timeline {
    fn new(start: Instant, duration: Duration) -> Timeline {
        // Replies may come in after the deadline (up to a request's
        // timeout); later ones count in the last second.
        let secs = duration.as_secs() as usize + 32;
        Timeline {
            start,
            ok: (0..secs).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..secs).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, ok: bool) {
        let s = (self.start.elapsed().as_secs() as usize).min(self.ok.len() - 1);
        let v = if ok { &self.ok[s] } else { &self.errors[s] };
        v.fetch_add(1, Ordering::Relaxed);
    }

    /// (second, ok, errors) up to the last second with anything in it.
    fn rows(&self) -> Vec<(usize, u64, u64)> {
        let rows: Vec<(usize, u64, u64)> = self
            .ok
            .iter()
            .zip(&self.errors)
            .enumerate()
            .map(|(i, (o, e))| (i, o.load(Ordering::Relaxed), e.load(Ordering::Relaxed)))
            .collect();
        let last = rows
            .iter()
            .rposition(|r| r.1 + r.2 > 0)
            .map_or(0, |i| i + 1);
        rows[..last].to_vec()
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 10s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s or m")),
    };
    if !(0.001..=3600.0).contains(&secs) {
        return Err(format!("duration {s:?} must be between 1ms and 1h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What one worker measured.
struct Tally {
    /// Shared with the interval reporter.
    done: Done,
    timeline: Arc<Timeline>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new(done: Done, timeline: Arc<Timeline>) -> Result<Tally, Failure> {
        Ok(Tally {
            done,
            timeline,
            ok: 0,
            errors: 0,
            first_error: None,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| Failure {
                code: 1,
                message: format!("histogram: {e}"),
            })?,
        })
    }

    fn record(&mut self, started: Instant, outcome: Result<(), String>) {
        let us = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.latency_us.record(us);
        self.timeline.record(outcome.is_ok());
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        let _ = self.latency_us.add(other.latency_us);
    }
}

fn make_op(op: Op, seq: u64, args: &BenchArgs) -> pb::session_request::Op {
    use pb::session_request::Op as P;
    match op {
        Op::Ping => P::Ping(pb::PingRequest {}),
        // Operands vary so requests spread over the ring's partitions.
        Op::Add => P::Add(pb::AddRequest {
            a: (seq % 100_003) as i64,
            b: 1,
            n: args.n,
            w: args.w,
            timeout_ms: None,
            sloppy: None,
        }),
        Op::Stats => P::Stats(pb::StatsRequest { timeout_ms: None }),
    }
}

type Done = Arc<AtomicU64>;

async fn session_worker(
    client: Client,
    in_flight: u32,
    deadline: Instant,
    args: &BenchArgs,
    done: Done,
    timeline: Arc<Timeline>,
) -> Result<Tally, Failure> {
    let mut tally = Tally::new(done, timeline)?;
    let mut seq = 0u64;
    let mut opened = false;
    // Requests a stopping node ended its session without running: sent
    // again first on the next session (they keep their start time).
    let mut resend: Vec<(u64, Instant)> = Vec::new();
    // A node that goes away (killed, restarted) ends its session: the
    // requests in flight on it count as failed, and a new session opens
    // once the node answers again, until the deadline. Only a node that
    // cannot be reached at the very start fails the bench.
    // Past the deadline, requests to send again still get up to 30 s.
    let last_chance = deadline + Duration::from_secs(30);
    while Instant::now() < deadline || (!resend.is_empty() && Instant::now() < last_chance) {
        let run = session_run(
            &client,
            in_flight,
            deadline,
            args,
            &mut tally,
            &mut seq,
            &mut resend,
        );
        match run.await {
            Ok(()) if resend.is_empty() => break,
            Ok(()) => opened = true,
            Err((false, e)) if !opened => return Err(e.into()),
            Err((was_open, _)) => {
                opened |= was_open;
                // A node that said it stopped is left at once (its
                // requests go to the next session); one that cannot be
                // reached is asked again after a pause.
                if !was_open {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    for (_, t0) in resend {
        tally.record(
            t0,
            Err("not run: its node stopped and no other took it".into()),
        );
    }
    Ok(tally)
}

/// One session until the deadline (`Ok`) or until it breaks (`Err`, with
/// whether it had opened). Its requests in flight are recorded as failed,
/// unless the node said it did not run them (it was stopping): those go to
/// `resend`, for the next session.
async fn session_run(
    client: &Client,
    in_flight: u32,
    deadline: Instant,
    args: &BenchArgs,
    tally: &mut Tally,
    seq: &mut u64,
    resend: &mut Vec<(u64, Instant)>,
) -> Result<(), (bool, tonic::Status)> {
    let (tx, rx) = mpsc::channel(in_flight as usize * 2);
    let mut replies = client
        .raw()
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| (false, s))?
        .into_inner();
    let mut started: HashMap<u64, Instant> = HashMap::with_capacity(in_flight as usize * 2);
    // Sends the next request (one to send again first), remembering when it
    // left. Once the session no longer takes requests, the request goes
    // back to `resend` (it was not sent) and false says to stop sending;
    // the replies still come, then how the session ended.
    let send_next =
        |started: &mut HashMap<u64, Instant>, seq: &mut u64, resend: &mut Vec<(u64, Instant)>| {
            let (id, t0) = resend.pop().unwrap_or_else(|| {
                *seq += 1;
                (*seq - 1, Instant::now())
            });
            let req = pb::SessionRequest {
                id,
                op: Some(make_op(args.op, id, args)),
            };
            match tx.try_send(req) {
                Ok(()) => {
                    started.insert(id, t0);
                    true
                }
                Err(_) => {
                    resend.push((id, t0));
                    false
                }
            }
        };
    let mut open = true;
    for _ in 0..in_flight.max(u32::try_from(resend.len()).unwrap_or(u32::MAX)) {
        if !send_next(&mut started, seq, resend) {
            open = false;
            break;
        }
    }
    while !started.is_empty() {
        let reply = match replies.message().await {
            Ok(Some(r)) => r,
            // Broken, or closed by the node (it is stopping), with requests
            // unanswered.
            broken => {
                let s = broken
                    .err()
                    .unwrap_or_else(|| tonic::Status::unavailable("session closed by the node"));
                if crate::rpc::server::unanswered_not_run(&s) {
                    resend.extend(started.drain());
                } else {
                    for (_, t0) in started.drain() {
                        tally.record(t0, Err(format!("session broke: {}", s.message())));
                    }
                }
                return Err((true, s));
            }
        };
        let Some(t0) = started.remove(&reply.id) else {
            continue;
        };
        let outcome = match reply.result {
            Some(pb::session_reply::Result::Error(e)) => Err(e.message),
            Some(_) => Ok(()),
            None => Err("empty reply".to_string()),
        };
        tally.record(t0, outcome);
        if open && (Instant::now() < deadline || !resend.is_empty()) {
            open = send_next(&mut started, seq, resend);
        }
    }
    Ok(())
}

async fn unary_worker(
    client: Client,
    worker: u64,
    deadline: Instant,
    args: &BenchArgs,
    done: Done,
    timeline: Arc<Timeline>,
) -> Result<Tally, Failure> {
    use pb::session_request::Op as P;
    let mut tally = Tally::new(done, timeline)?;
    let mut seq = worker << 40;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let outcome = match make_op(args.op, seq, args) {
            P::Ping(_) => client.ping().await.map(|_| ()),
            P::Add(a) => client.add(a).await.map(|_| ()),
            P::Stats(s) => client.stats(s).await.map(|_| ()),
        };
        tally.record(t0, outcome.map_err(|s| super::status_line(&s)));
        seq += 1;
    }
    Ok(tally)
}

pub(super) async fn run(args: BenchArgs, client: ClientArgs) -> Result<(), Failure> {
    let credentials = client.credentials()?;
    let mut nodes = vec![client.node.clone()];
    nodes.extend(args.also.iter().cloned());
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(Client::connect(n, credentials.clone()).await?);
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let c = args.concurrency;
    let done: Done = Done::default();
    let timeline = Arc::new(Timeline::new(started, args.duration));
    let mut tally = Tally::new(Done::clone(&done), Arc::clone(&timeline))?;
    let reporter = args.report_every.map(|every| {
        let done = Done::clone(&done);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let mut last = 0u64;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                let rate = (now - last) as f64 / every.as_secs_f64();
                last = now;
                println!(
                    "t {:>6.2}s  throughput {rate:.0} ops/s",
                    started.elapsed().as_secs_f64()
                );
            }
        })
    });
    let results: Vec<Result<Tally, Failure>> = if args.unary {
        let futs = (0..c).map(|i| {
            let client = clients[i as usize % clients.len()].clone();
            unary_worker(
                client,
                u64::from(i),
                deadline,
                &args,
                Done::clone(&done),
                Arc::clone(&timeline),
            )
        });
        futures::future::join_all(futs).await
    } else {
        // One session per node; the in-flight budget is split between them.
        let k = clients.len() as u32;
        let futs = clients.iter().enumerate().map(|(i, client)| {
            let share = c / k + u32::from((i as u32) < c % k);
            session_worker(
                client.clone(),
                share.max(1),
                deadline,
                &args,
                Done::clone(&done),
                Arc::clone(&timeline),
            )
        });
        futures::future::join_all(futs).await
    };
    if let Some(r) = reporter {
        r.abort();
    }
    for r in results {
        tally.merge(r?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = tally.ok + tally.errors;
    let rate = tally.ok as f64 / elapsed;
    let h = &tally.latency_us;
    let op = format!("{:?}", args.op).to_lowercase();
    let mode = if args.unary { "unary" } else { "session" };
    match client.output {
        Output::Text => {
            println!(
                "op {op}  mode {mode}  concurrency {c}  nodes {}  elapsed {elapsed:.2}s",
                nodes.join(",")
            );
            println!(
                "requests {total}  ok {}  errors {}  throughput {rate:.0} ops/s",
                tally.ok, tally.errors
            );
            println!(
                "latency us  p50 {}  p90 {}  p99 {}  max {}",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.max()
            );
            if let Some(e) = &tally.first_error {
                println!("first error: {e}");
            }
            if args.timeline {
                println!("second        ok  errors");
                for (sec, ok, errors) in timeline.rows() {
                    println!("{sec:>6}  {ok:>8}  {errors:>6}");
                }
            }
        }
        Output::Json => println!(
            "{}",
            json!({
                "op": op, "mode": mode, "concurrency": c, "nodes": nodes,
                "elapsed_s": elapsed, "requests": total, "ok": tally.ok,
                "errors": tally.errors, "ops_per_sec": rate,
                "latency_us": {
                    "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9),
                    "p99": h.value_at_quantile(0.99), "max": h.max(),
                },
                "first_error": tally.first_error,
                "timeline": timeline.rows().iter().map(|(sec, ok, errors)| json!({
                    "second": sec, "ok": ok, "errors": errors,
                })).collect::<Vec<_>>(),
            })
        ),
    }
    Ok(())
}
