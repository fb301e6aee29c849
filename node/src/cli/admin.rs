//! `flavio admin`: riak-admin's cluster commands over the `flavio.v1.Admin`
//! service of one node (`--node`).
//!
//! Membership changes follow riak's staged workflow: `cluster join` /
//! `leave` / `force-remove` / `replace` / `force-replace` stage a change on
//! the claimant, `cluster plan` shows what the staged changes will do,
//! `cluster commit` applies exactly that plan and `cluster clear` drops it.
//! `member-status`, `ring-status` and `transfers` observe the cluster.
//!
//! This module only parses arguments, calls the RPC and prints; rendering
//! lives in [`super::admin_format`], the decisions on the node. As in riak,
//! `cluster join` runs against the node that joins, but it names a member by
//! address (`host:port`) rather than by node name, since a name alone does
//! not say where to connect.

use clap::{Args, Subcommand};
use flavio_proto::v1 as pb;

use super::admin_format as fmt;
use super::{ClientArgs, Failure, Output};
use crate::cluster::claimant::check_location;
use crate::rpc::client::{self, Admin};

/// Arguments of `flavio admin`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Members, their state and share of the ring now and after pending transfers.
    MemberStatus,
    /// Claimant, ring readiness, pending ownership handoffs, unreachable nodes.
    RingStatus,
    /// Transfers running now on every reachable member.
    Transfers,
    /// Stage, plan, commit or clear membership changes.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Mark an unreachable NODE down, as riak-admin down: the ring converges
    /// without it and, if it was the claimant, another member takes over, so
    /// it can be force-removed or force-replaced. It is marked up when back.
    Down {
        /// The node's name (e.g. flavio2@127.0.0.1).
        #[arg(value_name = "NODE")]
        down: String,
        /// Mark it down without a majority of the valid members agreeing: only
        /// when it is dead for good (not cut off) and no majority is left, as
        /// in a cluster of two that lost one. A node on the other side of a
        /// partition marked down this way becomes a second writer until the
        /// partition heals.
        #[arg(long)]
        without_majority: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Stage the join of --node to the cluster of the member at NODE_ADDR (host:port).
    Join {
        /// Address of any member of the cluster to join (host:port).
        #[arg(value_name = "NODE_ADDR")]
        target: String,
    },
    /// Stage the leave of NODE (default: the node at --node); it hands off its data first.
    Leave {
        /// The leaving node's name (e.g. flavio4@127.0.0.1).
        // Not `node`: that id belongs to the global --node.
        #[arg(value_name = "NODE")]
        leaving: Option<String>,
    },
    /// Stage the removal of NODE without handoff: its replicas are lost.
    ForceRemove {
        /// The node's name.
        #[arg(value_name = "NODE")]
        removed: String,
    },
    /// Stage handing OLD's partitions to NEW (a joining node), then OLD leaves.
    Replace {
        /// The node to replace.
        old: String,
        /// The joining node that takes its place.
        new: String,
    },
    /// Stage giving OLD's partitions to NEW without handoff: OLD's replicas are lost.
    ForceReplace {
        /// The node to replace.
        old: String,
        /// The joining node that takes its place.
        new: String,
    },
    /// Stage setting the location (rack, zone) of NODE (default: the node at --node):
    /// claim then places the replicas of each preference list on distinct locations.
    Location {
        /// The location, e.g. zone-a.
        #[arg(value_name = "LOCATION")]
        location: String,
        /// The member's name (default: the node at --node).
        #[arg(value_name = "NODE")]
        located: Option<String>,
    },
    /// Show what the staged changes will do.
    Plan,
    /// Apply the last plan shown.
    Commit {
        /// Commit only if the last plan still has this id (from `plan --output json`).
        #[arg(long)]
        plan_id: Option<String>,
    },
    /// Drop the staged changes.
    Clear,
}

async fn connect(args: &ClientArgs) -> Result<Admin, Failure> {
    Ok(client::admin(&args.node, args.credentials()?).await?)
}

/// Prints `text` as is (the renderers end their lines) or the JSON document
/// on one line, like the other client commands.
fn print(output: Output, text: impl FnOnce() -> String, json: impl FnOnce() -> serde_json::Value) {
    match output {
        Output::Text => print!("{}", text()),
        Output::Json => println!("{}", json()),
    }
}

/// Refuses bad arguments before connecting, so a usage error is reported
/// as one (exit 2) even when the node is unreachable.
fn check(command: &AdminCommand) -> Result<(), Failure> {
    if let AdminCommand::Down { down, .. } = command
        && down.trim().is_empty()
    {
        return Err(Failure::usage("NODE must not be empty"));
    }
    let AdminCommand::Cluster(c) = command else {
        return Ok(());
    };
    let names: Vec<(&str, &str)> = match c {
        ClusterCommand::Join { target } => {
            // A riak-style node name here would otherwise surface as a
            // confusing DNS or URI error.
            if target.contains('@') || !target.contains(':') {
                return Err(Failure::usage(format!(
                    "cluster join takes a member's address (host:port, e.g. 127.0.0.1:10017), got {target:?}"
                )));
            }
            vec![]
        }
        ClusterCommand::Leave {
            leaving: Some(node),
        }
        | ClusterCommand::ForceRemove { removed: node }
        | ClusterCommand::Location {
            located: Some(node),
            ..
        } => vec![("NODE", node)],
        ClusterCommand::Replace { old, new } | ClusterCommand::ForceReplace { old, new } => {
            vec![("OLD", old), ("NEW", new)]
        }
        _ => vec![],
    };
    if let ClusterCommand::Location { location, .. } = c {
        check_location(location).map_err(|e| Failure::usage(e.to_string()))?;
    }
    for (what, name) in names {
        if name.trim().is_empty() {
            return Err(Failure::usage(format!("{what} must not be empty")));
        }
    }
    Ok(())
}

/// Runs `flavio admin ...`.
pub(super) async fn run(args: AdminArgs, client: ClientArgs) -> Result<(), Failure> {
    let out = client.output;
    check(&args.command)?;
    let mut admin = connect(&client).await?;
    match args.command {
        AdminCommand::MemberStatus => {
            let r = admin
                .member_status(pb::MemberStatusRequest {})
                .await?
                .into_inner();
            print(
                out,
                || fmt::member_status(&r),
                || fmt::member_status_json(&r),
            );
        }
        AdminCommand::RingStatus => {
            let r = admin
                .ring_status(pb::RingStatusRequest {})
                .await?
                .into_inner();
            print(out, || fmt::ring_status(&r), || fmt::ring_status_json(&r));
        }
        AdminCommand::Transfers => {
            let r = admin
                .transfers(pb::TransfersRequest { local_only: false })
                .await?
                .into_inner();
            print(out, || fmt::transfers(&r), || fmt::transfers_json(&r));
        }
        AdminCommand::Cluster(c) => cluster(&mut admin, c, out).await?,
        AdminCommand::Down {
            down,
            without_majority,
        } => {
            let r = admin
                .down(pb::DownRequest {
                    node: down,
                    without_majority,
                })
                .await?
                .into_inner();
            print(out, || format!("{}\n", r.message), || fmt::stage_json(&r));
        }
    }
    Ok(())
}

async fn cluster(admin: &mut Admin, c: ClusterCommand, out: Output) -> Result<(), Failure> {
    let force = matches!(c, ClusterCommand::ForceReplace { .. });
    let staged = match c {
        ClusterCommand::Join { target } => {
            admin.stage_join(pb::StageJoinRequest { target }).await?
        }
        ClusterCommand::Leave { leaving } => {
            // Empty asks the node that receives the request to leave.
            let node = leaving.unwrap_or_default();
            admin.stage_leave(pb::StageLeaveRequest { node }).await?
        }
        ClusterCommand::ForceRemove { removed: node } => {
            admin.stage_remove(pb::StageRemoveRequest { node }).await?
        }
        ClusterCommand::Replace { old, new } | ClusterCommand::ForceReplace { old, new } => {
            let req = pb::StageReplaceRequest {
                old_node: old,
                new_node: new,
                force,
            };
            admin.stage_replace(req).await?
        }
        ClusterCommand::Location { location, located } => {
            let req = pb::StageLocationRequest {
                node: located.unwrap_or_default(),
                location,
            };
            admin.stage_location(req).await?
        }
        ClusterCommand::Plan => {
            let r = admin.plan(pb::PlanRequest {}).await?.into_inner();
            print(out, || fmt::plan(&r), || fmt::plan_json(&r));
            return Ok(());
        }
        ClusterCommand::Commit { plan_id } => {
            let req = pb::CommitRequest {
                plan_id: plan_id.unwrap_or_default(),
            };
            let r = admin.commit(req).await?.into_inner();
            print(out, || format!("{}\n", r.message), || fmt::commit_json(&r));
            return Ok(());
        }
        ClusterCommand::Clear => {
            let r = admin.clear(pb::ClearRequest {}).await?.into_inner();
            print(out, || format!("{}\n", r.message), || fmt::clear_json(&r));
            return Ok(());
        }
    };
    // The node words the outcome (riak's "Success: staged join request for
    // 'flavio2@127.0.0.1' to 'flavio1@127.0.0.1'"); print it as given.
    let r = staged.into_inner();
    print(out, || format!("{}\n", r.message), || fmt::stage_json(&r));
    Ok(())
}
