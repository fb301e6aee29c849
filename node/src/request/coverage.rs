//! A coverage request: one request to every vnode of the ring, answers merged.
//!
//! With a single owner per partition (no replicas to choose between) the
//! covering set is simply every partition; riak_core's coverage plans, which
//! pick a minimal set of vnodes covering the keyspace with replicas, are left
//! out because every vnode holds distinct state here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Dispatch;
use super::dispatch::Answers;
use crate::Result;
use crate::ring::PartitionId;
use crate::vnode::Vnode;

/// The merged answers of a coverage request.
#[derive(Debug)]
pub struct Coverage<R> {
    /// Answers by partition, in ring order.
    pub replies: Vec<(PartitionId, R)>,
    /// Partitions that failed, with why.
    pub errors: Vec<(PartitionId, crate::Error)>,
    /// Partitions that did not answer in time.
    pub missing: Vec<PartitionId>,
}

impl<R> Coverage<R> {
    /// True unless every asked partition answered successfully.
    pub fn partial(&self) -> bool {
        !self.errors.is_empty() || !self.missing.is_empty()
    }
}

/// The pure state of one coverage request.
#[derive(Debug)]
pub struct CoverageState<R> {
    answers: Vec<Option<Result<R>>>,
    partitions: Vec<PartitionId>,
    /// Position in `partitions` of each partition ordinal asked.
    position: Vec<Option<usize>>,
    outstanding: usize,
}

impl<R> CoverageState<R> {
    /// Waits for an answer from each of `partitions`.
    pub fn new(partitions: Vec<PartitionId>) -> Self {
        let max = partitions
            .iter()
            .map(|p| p.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let mut position = vec![None; max];
        for (i, p) in partitions.iter().enumerate() {
            position[p.0 as usize] = Some(i);
        }
        CoverageState {
            answers: partitions.iter().map(|_| None).collect(),
            outstanding: partitions.len(),
            partitions,
            position,
        }
    }

    /// Records an answer; returns true once every partition has answered.
    /// An answer from a partition not asked, or a second answer, is ignored.
    pub fn record(&mut self, p: PartitionId, r: Result<R>) -> bool {
        let slot = self
            .position
            .get(p.0 as usize)
            .copied()
            .flatten()
            .and_then(|i| self.answers.get_mut(i));
        if let Some(slot @ None) = slot {
            *slot = Some(r);
            self.outstanding -= 1;
        }
        self.is_complete()
    }

    /// True once every partition has answered.
    pub fn is_complete(&self) -> bool {
        self.outstanding == 0
    }

    /// The merged result so far.
    pub fn finish(self) -> Coverage<R> {
        let mut out = Coverage {
            replies: Vec::new(),
            errors: Vec::new(),
            missing: Vec::new(),
        };
        for (p, a) in self.partitions.into_iter().zip(self.answers) {
            match a {
                Some(Ok(r)) => out.replies.push((p, r)),
                Some(Err(e)) => out.errors.push((p, e)),
                None => out.missing.push(p),
            }
        }
        out
    }
}

/// Sends `req` to the vnode of every partition in `partitions`, and merges
/// what arrives before `timeout`.
pub async fn run<V: Vnode>(
    dispatch: &dyn Dispatch<V>,
    partitions: Vec<PartitionId>,
    req: V::CoverageRequest,
    timeout: Duration,
) -> Coverage<Answers<V::CoverageReply>> {
    let req = Arc::new(req);
    let mut state = CoverageState::new(partitions.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    dispatch.coverage(
        partitions,
        req,
        Arc::new(move |p, r| {
            let _ = tx.send((p, r));
        }),
    );
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while !state.is_complete() {
        tokio::select! {
            got = rx.recv() => match got {
                Some((p, r)) => { state.record(p, r); }
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    state.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_when_all_answer_in_ring_order() {
        let mut s = CoverageState::new(vec![PartitionId(0), PartitionId(1), PartitionId(2)]);
        assert!(!s.record(PartitionId(2), Ok(3)));
        assert!(!s.record(PartitionId(0), Ok(1)));
        assert!(
            !s.record(PartitionId(2), Ok(99)),
            "a duplicate answer is ignored"
        );
        assert!(s.record(PartitionId(1), Ok(2)));
        let c = s.finish();
        assert!(!c.partial());
        assert_eq!(
            c.replies,
            vec![
                (PartitionId(0), 1),
                (PartitionId(1), 2),
                (PartitionId(2), 3)
            ]
        );
    }

    #[test]
    fn missing_answers_make_it_partial() {
        let mut s = CoverageState::new(vec![PartitionId(0), PartitionId(1)]);
        s.record(PartitionId(1), Ok(5));
        s.record(PartitionId(7), Ok(5));
        let c = s.finish();
        assert!(c.partial());
        assert_eq!(c.missing, vec![PartitionId(0)]);
    }
}
