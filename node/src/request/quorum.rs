//! A quorum request: N replicas asked, success once W have answered.
//!
//! Replies and errors are kept by [`Replica`] (partition and node, primary
//! or fallback), so the caller can say which vnode answered.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Dispatch;
use crate::ring::Replica;
use crate::vnode::Vnode;
use crate::{Error, Result};

/// Where a quorum request stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Still waiting.
    Pending,
    /// W replicas answered.
    Done,
    /// Too many replicas failed for W to be reachable.
    Failed,
}

/// The pure state of one quorum request.
#[derive(Debug)]
pub struct Quorum<R> {
    n: usize,
    w: usize,
    replies: Vec<(Replica, R)>,
    errors: Vec<(Replica, Error)>,
}

impl<R> Quorum<R> {
    /// A request to `n` replicas that needs `w` replies. Refuses `w == 0`,
    /// `n == 0` and `w > n`.
    pub fn new(n: usize, w: usize) -> Result<Self> {
        if n == 0 || w == 0 || w > n {
            return Err(Error::InvalidArgument(format!(
                "need 1 <= W <= N, got N={n} W={w}"
            )));
        }
        Ok(Quorum {
            n,
            w,
            replies: Vec::with_capacity(n),
            errors: Vec::new(),
        })
    }

    /// Records one replica's answer and says where the request stands.
    pub fn record(&mut self, from: Replica, r: Result<R>) -> Progress {
        match r {
            Ok(v) => self.replies.push((from, v)),
            Err(e) => self.errors.push((from, e)),
        }
        self.progress()
    }

    /// Where the request stands.
    pub fn progress(&self) -> Progress {
        if self.replies.len() >= self.w {
            Progress::Done
        } else if self.n - self.errors.len() < self.w {
            Progress::Failed
        } else {
            Progress::Pending
        }
    }

    /// The outcome: every successful reply on success; otherwise the error,
    /// naming how many replies arrived (`timeout` tells a timeout apart).
    pub fn finish(self, timeout: Option<Duration>) -> Result<Vec<(Replica, R)>> {
        match (self.progress(), timeout) {
            (Progress::Done, _) => Ok(self.replies),
            (Progress::Pending, Some(t)) => Err(Error::QuorumTimeout {
                received: self.replies.len(),
                wanted: self.w,
                n: self.n,
                timeout_ms: t.as_millis() as u64,
            }),
            _ => Err(Error::QuorumFailed {
                received: self.replies.len(),
                wanted: self.w,
                n: self.n,
                errors: self
                    .errors
                    .iter()
                    .map(|(r, e)| format!("partition {} on {}: {e}", r.partition, r.node))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }
}

/// Sends `make(replica)` to each replica of `preflist` and waits for `w`
/// replies or `timeout`, whichever comes first.
pub async fn run<V: Vnode>(
    dispatch: &dyn Dispatch<V>,
    preflist: &[Replica],
    w: usize,
    timeout: Duration,
    mut make: impl FnMut(&Replica) -> V::Command,
) -> Result<Vec<(Replica, V::Reply)>> {
    let mut quorum = Quorum::new(preflist.len(), w)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for replica in preflist {
        let tx = tx.clone();
        let from = replica.clone();
        dispatch.command(
            replica,
            make(replica),
            Box::new(move |_, r| {
                let _ = tx.send((from, r));
            }),
        );
    }
    drop(tx);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some((p, r)) => {
                    if quorum.record(p, r) != Progress::Pending {
                        return quorum.finish(None);
                    }
                }
                // Every replier ran or was dropped: nothing more can come.
                None => return quorum.finish(None),
            },
            () = &mut deadline => return quorum.finish(Some(timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::PartitionId;

    fn p(i: u32) -> Replica {
        Replica::primary(PartitionId(i), "a".into())
    }

    #[test]
    fn refuses_impossible_parameters() {
        assert!(Quorum::<()>::new(3, 4).is_err());
        assert!(Quorum::<()>::new(0, 0).is_err());
        assert!(Quorum::<()>::new(3, 0).is_err());
        assert!(Quorum::<()>::new(3, 3).is_ok());
    }

    #[test]
    fn done_after_w_replies() {
        let mut q = Quorum::new(3, 2).expect("valid");
        assert_eq!(q.record(p(1), Ok(7)), Progress::Pending);
        assert_eq!(q.record(p(2), Ok(7)), Progress::Done);
        let replies = q.finish(None).expect("done");
        assert_eq!(replies, vec![(p(1), 7), (p(2), 7)]);
    }

    #[test]
    fn errors_name_the_replica() {
        let mut q = Quorum::<u8>::new(2, 2).expect("valid");
        let other = Replica::primary(PartitionId(3), "b".into());
        q.record(other, Err(Error::ShuttingDown));
        let err = q.finish(None).expect_err("failed");
        assert!(err.to_string().contains("partition 3 on b:"), "{err}");
    }

    #[test]
    fn fails_as_soon_as_w_is_unreachable() {
        let mut q = Quorum::new(3, 3).expect("valid");
        assert_eq!(q.record(p(1), Ok(1)), Progress::Pending);
        assert_eq!(q.record(p(2), Err(Error::ShuttingDown)), Progress::Failed);
        let err = q.finish(None).expect_err("failed");
        assert!(err.to_string().contains("1 of 3 replies"), "{err}");
    }

    #[test]
    fn timeout_names_how_many_arrived() {
        let mut q = Quorum::new(3, 3).expect("valid");
        q.record(p(1), Ok(1));
        q.record(p(2), Ok(1));
        let err = q
            .finish(Some(Duration::from_millis(5000)))
            .expect_err("timeout");
        assert_eq!(
            err.to_string(),
            "quorum not reached: 2 of 3 replies (N=3) within 5000 ms"
        );
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
    }
}
