//! Deleting a FlavioCluster while its operator still runs: what the chart's
//! pre-delete hook (`flavio-operator delete-cluster`) does before `helm
//! uninstall` removes the operator.
//!
//! Without it an uninstall deletes the operator Deployment and the
//! FlavioCluster in the same breath; the cluster's finalizer
//! ([`FINALIZER`](crate::crd::FINALIZER)) then has nobody left to run it, and
//! the FlavioCluster and its pods stay `Terminating` for good. Deleting the
//! cluster first and waiting until it is gone runs the finalizer (the PVC
//! policy) while the operator is still there; the StatefulSet, Services and
//! Secret follow by garbage collection (they are owned by the cluster).
//!
//! Leaves out: clusters the release did not install (a user's own
//! FlavioClusters outlive an uninstall, as CRDs in `crds/` do), and removing
//! a finalizer by force: if no operator runs, the wait times out and says so.

use std::time::Duration;

use kube::api::{Api, DeleteParams};
use kube::runtime::wait::{await_condition, conditions};

use crate::crd::FlavioCluster;
use crate::{Error, Result};

/// What [`delete_and_wait`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// There was no such FlavioCluster (a repeated uninstall, or never made).
    Absent,
    /// It was deleted and is gone, finalizer included.
    Gone,
}

/// Deletes the FlavioCluster `name` and waits up to `timeout` until it is
/// gone. Fails with [`Error::StillPresent`] when it is not gone by then (the
/// operator is not running, or its cleanup keeps failing).
pub async fn delete_and_wait(
    api: &Api<FlavioCluster>,
    name: &str,
    timeout: Duration,
) -> Result<Deleted> {
    let Some(fc) = api.get_opt(name).await? else {
        return Ok(Deleted::Absent);
    };
    let uid = fc.metadata.uid.clone().ok_or(Error::Missing("uid"))?;
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        // Gone between the get and the delete: what we wanted.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Deleted::Gone),
        Err(e) => return Err(e.into()),
    }
    let gone = await_condition(api.clone(), name, conditions::is_deleted(&uid));
    match tokio::time::timeout(timeout, gone).await {
        Ok(Ok(_)) => Ok(Deleted::Gone),
        Ok(Err(e)) => Err(Error::Wait(e.to_string())),
        Err(_) => {
            // Name what holds it, for the hook's log.
            let finalizers = match api.get_opt(name).await? {
                Some(fc) if fc.metadata.uid.as_deref() == Some(uid.as_str()) => {
                    fc.metadata.finalizers.unwrap_or_default()
                }
                // It went just as the clock ran out.
                _ => return Ok(Deleted::Gone),
            };
            Err(Error::StillPresent {
                name: name.to_string(),
                waited: timeout,
                finalizers: finalizers.join(", "),
            })
        }
    }
}
