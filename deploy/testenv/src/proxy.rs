//! A Service's virtual address, as kube-proxy's userspace mode made it: a
//! TCP listener on loopback that sends each new connection to one of the
//! Service's ready endpoints (round robin). Connections already open stay
//! with their pod until either side closes them, as with a real Service.
//!
//! The endpoints are computed as the endpoints controller does, ten times a
//! second: the pods the Service's selector matches that are Ready, not being
//! deleted, and have an IP, at the first port's target port. (The
//! controller itself cannot publish them here: the API server refuses
//! loopback addresses in Endpoints, and pods here live on 127.0.0.x.)
//!
//! The test environment has no kube-proxy (no ClusterIP routing), so tests
//! that want "a client of the Service" use this. What it leaves out:
//! session affinity, named target ports, more than one port, and UDP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::ListParams;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// A running proxy; stops when dropped.
pub struct ServiceProxy {
    addr: std::net::SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    ready: Arc<Mutex<Vec<String>>>,
}

impl ServiceProxy {
    /// Serves the Service `service` (of `services`, selecting among `pods`)
    /// on 127.0.0.1.
    pub async fn start(
        services: Api<Service>,
        pods: Api<Pod>,
        service: &str,
    ) -> Result<ServiceProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("service proxy: bind 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("service proxy: local address", e))?;
        let ready: Arc<Mutex<Vec<String>>> = Arc::default();
        let watch = {
            let ready = Arc::clone(&ready);
            let service = service.to_string();
            tokio::spawn(async move {
                loop {
                    if let Ok(addrs) = endpoints(&services, &pods, &service).await
                        && let Ok(mut r) = ready.lock()
                    {
                        *r = addrs;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let serve = {
            let ready = Arc::clone(&ready);
            tokio::spawn(async move {
                let mut next = 0usize;
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        // Out of descriptors, say: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let target = ready.lock().ok().and_then(|r| {
                        (!r.is_empty()).then(|| {
                            next = next.wrapping_add(1);
                            r[next % r.len()].clone()
                        })
                    });
                    // No ready endpoint: the connection is refused, as a
                    // Service without endpoints rejects it.
                    let Some(target) = target else { continue };
                    tokio::spawn(async move {
                        if let Ok(mut out) = TcpStream::connect(&target).await {
                            let _ = out.set_nodelay(true);
                            let _ = inbound.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                }
            })
        };
        Ok(ServiceProxy {
            addr,
            tasks: vec![watch, serve],
            ready,
        })
    }

    /// The Service's address here (`127.0.0.1:PORT`).
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The ready endpoints last read.
    pub fn endpoints(&self) -> Vec<String> {
        self.ready.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `ip:port` of every ready pod the Service selects.
pub async fn endpoints(
    services: &Api<Service>,
    pods: &Api<Pod>,
    service: &str,
) -> Result<Vec<String>> {
    let svc = services.get(service).await?;
    let spec = svc.spec.unwrap_or_default();
    let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else {
        return Ok(vec![]);
    };
    let Some(port) = spec.ports.unwrap_or_default().into_iter().next() else {
        return Ok(vec![]);
    };
    let target = match port.target_port {
        Some(IntOrString::Int(p)) => p,
        _ => port.port,
    };
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let list = pods
        .list(&ListParams::default().labels(&labels.join(",")))
        .await?;
    let mut v: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && crate::harness::pod_ready(p))
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .map(|ip| format!("{ip}:{target}"))
        .collect();
    v.sort();
    Ok(v)
}
