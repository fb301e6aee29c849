//! `testenv-exec`: `kubectl exec` for the test environment's pods.
//!
//! The kubelet stand-in has no streaming API, so `kubectl exec` cannot reach
//! it; this runs the command on the host with the environment, working
//! directory and mounts the stand-in started the container with (see
//! `flavio_testenv::exec`). Used as `deploy/testenv/testenv exec`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use flavio_testenv::harness::{client_from, state_dir};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

/// Runs a command in a test-environment pod: testenv exec [-n NS] [-c CTR] POD -- CMD...
#[derive(Debug, Parser)]
#[command(name = "testenv-exec", version)]
struct Args {
    /// Kubeconfig (default: $KUBECONFIG, else the environment's own).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The pod's namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// The container (default: the pod's first).
    #[arg(short, long)]
    container: Option<String>,
    /// The pod.
    pod: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let kubeconfig = args
        .kubeconfig
        .unwrap_or_else(|| state_dir().join("kubeconfig"));
    let client = client_from(&kubeconfig).await?;
    let pods: Api<Pod> = Api::namespaced(client, &args.namespace);
    let pod = pods
        .get(&args.pod)
        .await
        .with_context(|| format!("pod {}/{}", args.namespace, args.pod))?;
    let container = match args.container {
        Some(c) => c,
        None => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .context("the pod has no container")?,
    };
    let spec = flavio_testenv::exec::read_spec(
        &state_dir().join("kubelet"),
        &args.namespace,
        &args.pod,
        &pod.uid().unwrap_or_default(),
        &container,
    )?;
    // Inherits our stdio, as `kubectl exec -i` would, and passes the exit code on.
    let status = flavio_testenv::exec::command(&spec, &args.command)?
        .status()
        .context("running the command")?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}
