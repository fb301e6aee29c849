//! The one-off client commands: `ping`, `add`, `stats`, `health`.

use clap::Args;
use flavio_proto::v1 as pb;
use serde_json::json;

use super::{ClientArgs, Failure, Output};
use crate::rpc::Client;

/// Arguments of `flavio add`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// Left operand (signed 64-bit).
    #[arg(allow_negative_numbers = true)]
    a: i64,
    /// Right operand (signed 64-bit).
    #[arg(allow_negative_numbers = true)]
    b: i64,
    /// Replicas to run on (N); the node's default when omitted.
    #[arg(long, short = 'n')]
    n: Option<u32>,
    /// Replies to wait for (W); the node's default when omitted.
    #[arg(long, short = 'w')]
    w: Option<u32>,
    /// How long to wait for W replies, in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    timeout_ms: Option<u32>,
    /// Let fallbacks stand in for down primaries (true) or ask only the
    /// primaries (false); the node's default when omitted.
    #[arg(long, action = clap::ArgAction::Set)]
    sloppy: Option<bool>,
}

fn role(fallback: bool) -> &'static str {
    if fallback { "fallback" } else { "primary" }
}

/// Arguments of `flavio stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// List every vnode, not only those with ops_count > 0.
    #[arg(long)]
    all: bool,
    /// How long to wait for every vnode, in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    timeout_ms: Option<u32>,
}

async fn connect(args: &ClientArgs) -> Result<Client, Failure> {
    Ok(Client::connect(&args.node, args.credentials()?).await?)
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

pub(super) async fn ping(args: ClientArgs) -> Result<(), Failure> {
    let r = connect(&args).await?.ping().await?;
    match args.output {
        Output::Text => println!("pong {}", r.partition),
        Output::Json => print_json(&json!({"partition": r.partition, "node": r.node})),
    }
    Ok(())
}

pub(super) async fn add(args: AddArgs, client: ClientArgs) -> Result<(), Failure> {
    let conn = connect(&client).await?;
    let r = conn
        .add(pb::AddRequest {
            a: args.a,
            b: args.b,
            n: args.n,
            w: args.w,
            timeout_ms: args.timeout_ms,
            sloppy: args.sloppy,
        })
        .await?;
    match client.output {
        Output::Text => {
            println!("{}", r.sum);
            for x in &r.replicas {
                println!("{} {} {}", x.partition, x.node, role(x.fallback));
            }
        }
        Output::Json => print_json(&json!({
            "sum": r.sum,
            "replicas": r.replicas.iter().map(|x| json!({
                "sum": x.sum, "partition": x.partition, "node": x.node,
                "type": role(x.fallback),
            })).collect::<Vec<_>>(),
        })),
    }
    Ok(())
}

pub(super) async fn stats(args: StatsArgs, client: ClientArgs) -> Result<(), Failure> {
    let conn = connect(&client).await?;
    let r = conn
        .stats(pb::StatsRequest {
            timeout_ms: args.timeout_ms,
        })
        .await?;
    let shown: Vec<&pb::VnodeStats> = r
        .vnodes
        .iter()
        .filter(|v| args.all || v.ops_count > 0)
        .collect();
    match client.output {
        Output::Text => {
            // A fallback says so after its node's name.
            let node = |v: &pb::VnodeStats| {
                if v.fallback {
                    format!("{} (fallback)", v.node)
                } else {
                    v.node.clone()
                }
            };
            let node_w = shown
                .iter()
                .map(|v| node(v).len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!("{:<49}  {:<node_w$}  {:>10}", "Partition", "Node", "Ops");
            for v in &shown {
                println!(
                    "{:<49}  {:<node_w$}  {:>10}",
                    v.partition,
                    node(v),
                    v.ops_count
                );
            }
            for m in &r.missing {
                println!("No answer for partition {}: {}", m.partition, m.reason);
            }
            println!(
                "Total: {} ops in {} vnodes{}",
                r.total_ops,
                r.vnodes.len(),
                if r.partial {
                    " (partial: some vnodes did not answer)"
                } else {
                    ""
                }
            );
        }
        Output::Json => print_json(&json!({
            "vnodes": shown.iter().map(|v| json!({
                "partition": v.partition, "node": v.node, "ops_count": v.ops_count,
                "type": role(v.fallback),
            })).collect::<Vec<_>>(),
            "total_ops": r.total_ops,
            "partial": r.partial,
            "missing": r.missing.iter().map(|m| json!({
                "partition": m.partition, "reason": m.reason,
            })).collect::<Vec<_>>(),
        })),
    }
    Ok(())
}

pub(super) async fn health(args: ClientArgs) -> Result<(), Failure> {
    // Health needs no cookie: probes must work without the secret.
    let channel = crate::rpc::client::channel(&args.node, args.client_tls()?.as_ref())
        .await
        .map_err(|e| Failure {
            code: 1,
            message: e.to_string(),
        })?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "flavio.v1.Flavio".into(),
        })
        .await?
        .into_inner();
    let serving =
        r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    match args.output {
        Output::Text => println!("{}", if serving { "SERVING" } else { "NOT_SERVING" }),
        Output::Json => print_json(&json!({"serving": serving})),
    }
    if serving {
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            message: format!("node {} is not serving", args.node),
        })
    }
}
