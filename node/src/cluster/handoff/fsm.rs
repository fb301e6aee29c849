//! The sending side of an ownership handoff as a pure state machine: which
//! mode the vnode is in at each phase, and what a failure at any point does.
//! [`super`] (the handoff module) runs it against real streams; the tests here run it
//! against a simulated receiver, claimant and clients, with seeded random
//! schedules of commands and crashes, and check that the owner's count is
//! always exactly the acknowledged commands.
//!
//! The one rule it encodes: until the claimant has flipped ownership, the
//! sender's copy is the truth, so every failure goes back to `Normal` (held
//! commands are applied locally) and the transfer restarts from scratch;
//! after the flip, the receiver's copy is, so the sender deletes and
//! redirects. When the flip's outcome is unknown the vnode keeps holding.

/// How the sending vnode treats commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnodeMode {
    /// Applies locally.
    Normal,
    /// Applies locally and forwards a copy to the receiving copy.
    Forwarding,
    /// Keeps commands waiting.
    Holding,
    /// Sends everything to the new owner.
    Redirect,
}

/// Where a transfer attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the receiver to empty its copy and accept the session.
    Starting,
    /// Items streaming, commands applied and forwarded.
    Streaming,
    /// Everything sent; waiting for forwarded copies to be acknowledged.
    Holding,
    /// Asking the claimant to flip ownership.
    Flipping,
    /// Ownership flipped; the sender's copy is gone.
    Done,
    /// This attempt failed; the vnode is back to normal.
    Aborted,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The receiver emptied its copy and accepted the session.
    StartAcked,
    /// The receiver has every item durably.
    Finished,
    /// Every forwarded copy answered: all applied (`ok`) or one not.
    Drained {
        /// Whether all were applied.
        ok: bool,
    },
    /// The claimant flipped ownership.
    FlipConfirmed,
    /// The claimant has no such transfer (any more).
    FlipRefused,
    /// The claimant could not be asked; the flip may or may not have happened.
    FlipUnknown,
    /// The stream broke, the receiver refused or went away.
    Failed,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put the vnode in this mode (leaving `Holding` replays what was held).
    SetMode(VnodeMode),
    /// Take the vnode's items (in the same step as the mode change) and send
    /// them, then `Finish`.
    SendItems,
    /// Wait for every forwarded copy to be answered.
    AwaitForwards,
    /// Ask the claimant to flip ownership.
    RequestFlip,
    /// Delete the local copy.
    DeleteLocal,
    /// Start over later.
    RetryLater,
}

/// One attempt of one transfer, seen from the sender.
#[derive(Clone, Debug)]
pub struct SenderFsm {
    phase: Phase,
    mode: VnodeMode,
}

impl Default for SenderFsm {
    fn default() -> Self {
        Self::new()
    }
}

impl SenderFsm {
    /// A new attempt; the caller opens the stream and sends `Start`.
    pub fn new() -> Self {
        SenderFsm {
            phase: Phase::Starting,
            mode: VnodeMode::Normal,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The vnode's mode as this machine has set it.
    pub fn mode(&self) -> VnodeMode {
        self.mode
    }

    fn to(&mut self, phase: Phase, mut actions: Vec<Action>) -> Vec<Action> {
        self.phase = phase;
        for a in &actions {
            if let Action::SetMode(m) = a {
                self.mode = *m;
            }
        }
        actions.shrink_to_fit();
        actions
    }

    fn abort(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.mode != VnodeMode::Normal {
            actions.push(Action::SetMode(VnodeMode::Normal));
        }
        actions.push(Action::RetryLater);
        self.to(Phase::Aborted, actions)
    }

    /// Feeds one event; returns the actions to take, in order.
    pub fn on(&mut self, event: Event) -> Vec<Action> {
        use Event as E;
        use Phase as P;
        match (self.phase, event) {
            (P::Starting, E::StartAcked) => self.to(
                P::Streaming,
                vec![Action::SetMode(VnodeMode::Forwarding), Action::SendItems],
            ),
            (P::Streaming, E::Finished) => self.to(
                P::Holding,
                vec![Action::SetMode(VnodeMode::Holding), Action::AwaitForwards],
            ),
            (P::Holding, E::Drained { ok: true }) => {
                self.to(P::Flipping, vec![Action::RequestFlip])
            }
            (P::Flipping, E::FlipConfirmed) => self.to(
                P::Done,
                vec![Action::DeleteLocal, Action::SetMode(VnodeMode::Redirect)],
            ),
            // Unknown outcome: applying locally now could put commands on a
            // copy the claimant has already given away. Keep holding, ask again.
            (P::Flipping, E::FlipUnknown | E::Failed) => vec![Action::RequestFlip],
            (P::Done | P::Aborted, _) => Vec::new(),
            // Everything else before the flip is a failure of this attempt.
            _ => self.abort(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn happy_path() {
        let mut f = SenderFsm::new();
        assert_eq!(
            f.on(Event::StartAcked),
            vec![Action::SetMode(VnodeMode::Forwarding), Action::SendItems]
        );
        assert_eq!(
            f.on(Event::Finished),
            vec![Action::SetMode(VnodeMode::Holding), Action::AwaitForwards]
        );
        assert_eq!(f.on(Event::Drained { ok: true }), vec![Action::RequestFlip]);
        assert_eq!(f.on(Event::FlipUnknown), vec![Action::RequestFlip]);
        assert_eq!(
            f.on(Event::FlipConfirmed),
            vec![Action::DeleteLocal, Action::SetMode(VnodeMode::Redirect)]
        );
        assert_eq!(f.phase(), Phase::Done);
        assert_eq!(f.on(Event::Failed), Vec::new(), "done is done");
    }

    #[test]
    fn every_failure_before_the_flip_goes_back_to_normal() {
        let prefixes: [&[Event]; 4] = [
            &[],
            &[Event::StartAcked],
            &[Event::StartAcked, Event::Finished],
            &[
                Event::StartAcked,
                Event::Finished,
                Event::Drained { ok: true },
            ],
        ];
        for (i, prefix) in prefixes.iter().enumerate() {
            for failure in [
                Event::Failed,
                Event::Drained { ok: false },
                Event::FlipRefused,
            ] {
                let mut f = SenderFsm::new();
                for e in *prefix {
                    f.on(*e);
                }
                let actions = f.on(failure);
                if f.phase() == Phase::Flipping {
                    // Only an unknown outcome keeps it there.
                    assert_eq!(actions, vec![Action::RequestFlip], "{i} {failure:?}");
                    continue;
                }
                assert_eq!(f.phase(), Phase::Aborted, "{i} {failure:?}");
                assert_eq!(f.mode(), VnodeMode::Normal);
                assert!(!actions.contains(&Action::DeleteLocal));
                assert_eq!(actions.last(), Some(&Action::RetryLater));
            }
        }
    }

    /// A simulated transfer: a sender vnode, a receiver that can crash and
    /// restart, forwarded copies in flight, a claimant that sometimes cannot
    /// answer, and clients sending commands throughout.
    struct Sim {
        rng: StdRng,
        fsm: SenderFsm,
        sender: u64,
        receiver: u64,
        receiver_up: bool,
        /// Session of the receiving copy (bumped by each Start).
        session: u64,
        /// Forwarded copies in flight, by session.
        in_flight: Vec<u64>,
        forward_failed: bool,
        held: u64,
        acked: u64,
        flipped: bool,
        attempts: u32,
    }

    impl Sim {
        fn owner_count(&self) -> u64 {
            if self.flipped {
                self.receiver
            } else {
                self.sender
            }
        }

        fn set_mode(&mut self, m: VnodeMode) {
            // Leaving Holding replays the held commands in the new mode.
            let held = std::mem::take(&mut self.held);
            for _ in 0..held {
                self.command_in(m);
            }
        }

        fn command(&mut self) {
            self.command_in(self.fsm.mode());
        }

        fn command_in(&mut self, mode: VnodeMode) {
            match mode {
                VnodeMode::Normal => {
                    self.sender += 1;
                    self.acked += 1;
                }
                VnodeMode::Forwarding => {
                    self.sender += 1;
                    self.acked += 1;
                    self.in_flight.push(self.session);
                }
                VnodeMode::Holding => self.held += 1,
                VnodeMode::Redirect => {
                    // Not acknowledged when the new owner is down.
                    if self.receiver_up {
                        self.receiver += 1;
                        self.acked += 1;
                    }
                }
            }
        }

        fn deliver_one(&mut self) {
            if self.in_flight.is_empty() {
                return;
            }
            let i = self.rng.random_range(0..self.in_flight.len());
            let session = self.in_flight.swap_remove(i);
            // A copy of an abandoned attempt is refused by the receiver; it
            // was part of the snapshot of the attempt that replaced it.
            if session != self.session {
                return;
            }
            if self.receiver_up && self.rng.random_bool(0.97) {
                self.receiver += 1;
            } else {
                // Lost or refused without the handoff stream breaking.
                self.forward_failed = true;
            }
        }

        fn crash_receiver(&mut self) {
            self.receiver_up = false;
            // Copies in flight are lost with the connection.
            if !self.in_flight.is_empty() {
                self.in_flight.clear();
                self.forward_failed = true;
            }
            let phase = self.fsm.phase();
            if matches!(phase, Phase::Starting | Phase::Streaming | Phase::Holding) {
                let actions = self.fsm.on(Event::Failed);
                self.run(actions);
            }
        }

        fn run(&mut self, actions: Vec<Action>) {
            for a in actions {
                match a {
                    Action::SetMode(m) => self.set_mode(m),
                    Action::SendItems => {
                        // The snapshot is taken in the same step as the mode
                        // change, so it holds exactly what was applied before.
                        self.receiver += self.sender;
                    }
                    Action::AwaitForwards | Action::RequestFlip => {}
                    Action::DeleteLocal => {
                        self.sender = 0;
                    }
                    Action::RetryLater => {
                        self.fsm = SenderFsm::new();
                        self.forward_failed = false;
                        self.attempts += 1;
                    }
                }
            }
        }

        /// One step of the transfer, if its next event is available.
        fn progress(&mut self) {
            let event = match self.fsm.phase() {
                Phase::Starting if self.receiver_up => {
                    // The receiver empties its copy for the new session.
                    self.session += 1;
                    self.receiver = 0;
                    Some(Event::StartAcked)
                }
                Phase::Starting => Some(Event::Failed),
                Phase::Streaming if self.receiver_up => Some(Event::Finished),
                Phase::Streaming => Some(Event::Failed),
                Phase::Holding if self.in_flight.is_empty() => Some(Event::Drained {
                    ok: !self.forward_failed,
                }),
                Phase::Holding => {
                    self.deliver_one();
                    None
                }
                Phase::Flipping => {
                    if self.rng.random_bool(0.3) {
                        // The claimant may have flipped with the answer lost.
                        if self.rng.random_bool(0.5) {
                            self.flipped = true;
                        }
                        Some(Event::FlipUnknown)
                    } else {
                        // Flipping again is a no-op for the claimant.
                        self.flipped = true;
                        Some(Event::FlipConfirmed)
                    }
                }
                Phase::Done | Phase::Aborted => None,
            };
            if let Some(e) = event {
                let actions = self.fsm.on(e);
                self.run(actions);
            }
        }

        fn step(&mut self) {
            match self.rng.random_range(0..100) {
                0..=44 => self.command(),
                45..=69 => self.deliver_one(),
                70..=89 => self.progress(),
                90..=94 if self.receiver_up && self.fsm.phase() != Phase::Done => {
                    self.crash_receiver()
                }
                _ => self.receiver_up = true,
            }
        }
    }

    #[test]
    fn seeded_schedules_never_lose_or_double_an_acknowledged_command() {
        let mut aborted_runs = 0;
        for seed in 0..500u64 {
            let mut sim = Sim {
                rng: StdRng::seed_from_u64(seed),
                fsm: SenderFsm::new(),
                sender: 0,
                receiver: 0,
                receiver_up: true,
                session: 0,
                in_flight: Vec::new(),
                forward_failed: false,
                held: 0,
                acked: 0,
                flipped: false,
                attempts: 0,
            };
            // Some state before the transfer starts.
            for _ in 0..sim.rng.random_range(0..20) {
                sim.command();
            }
            for _ in 0..400 {
                sim.step();
                if sim.fsm.phase() != Phase::Holding {
                    assert_eq!(
                        sim.owner_count(),
                        sim.acked,
                        "seed {seed}: owner's count drifted from acknowledged commands"
                    );
                }
            }
            // Then the failures stop, and the transfer must finish.
            sim.receiver_up = true;
            let mut guard = 0;
            while sim.fsm.phase() != Phase::Done {
                sim.progress();
                guard += 1;
                assert!(guard < 10_000, "seed {seed}: transfer never finished");
            }
            for _ in 0..10 {
                sim.command();
            }
            assert!(sim.flipped);
            assert_eq!(sim.sender, 0, "seed {seed}: the sender deleted its copy");
            assert_eq!(
                sim.receiver, sim.acked,
                "seed {seed}: receiver has every acknowledged command"
            );
            if sim.attempts > 0 {
                aborted_runs += 1;
            }
        }
        assert!(
            aborted_runs > 50,
            "failures mid-transfer were exercised: {aborted_runs}"
        );
    }
}
