//! The flavio vnode: answers pings, adds, and counts its operations.

use crate::vnode::storage::decode_u64;
use crate::vnode::{Vnode, VnodeCtx, Wire};
use crate::{Error, Result};

/// Commands a flavio vnode understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Reply with `Pong`.
    Ping,
    /// Reply with `a + b`, and count one operation.
    Add {
        /// Left operand.
        a: i64,
        /// Right operand.
        b: i64,
    },
}

/// Replies of a flavio vnode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer to `Ping`.
    Pong,
    /// Answer to `Add`.
    Sum(i64),
}

/// Coverage requests of flavio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoverageRequest {
    /// Report `ops_count`.
    Stats,
}

/// A vnode's answer to [`CoverageRequest::Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoverageReply {
    /// The vnode's operation count.
    OpsCount(u64),
}

/// State of one flavio vnode.
#[derive(Debug)]
pub struct FlavioVnode {
    ops_count: u64,
}

const OPS_COUNT: &[u8] = b"ops_count";

impl FlavioVnode {
    /// Operations counted so far.
    pub fn ops_count(&self) -> u64 {
        self.ops_count
    }

    fn set_count(&mut self, n: u64, ctx: &mut VnodeCtx) {
        self.ops_count = n;
        ctx.put(OPS_COUNT, n.to_be_bytes());
    }
}

impl Vnode for FlavioVnode {
    type Command = Command;
    type Reply = Reply;
    type CoverageRequest = CoverageRequest;
    type CoverageReply = CoverageReply;

    fn init(_ctx: &VnodeCtx, stored: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self> {
        let mut ops_count = 0;
        for (k, v) in stored {
            if k == OPS_COUNT {
                ops_count = decode_u64(&v, "ops_count")?;
            }
        }
        Ok(FlavioVnode { ops_count })
    }

    fn handle_command(&mut self, cmd: Command, ctx: &mut VnodeCtx) -> Result<Reply> {
        match cmd {
            Command::Ping => Ok(Reply::Pong),
            Command::Add { a, b } => {
                let sum = a.checked_add(b).ok_or(Error::Overflow { a, b })?;
                self.set_count(self.ops_count + 1, ctx);
                Ok(Reply::Sum(sum))
            }
        }
    }

    fn handle_coverage(&mut self, req: &CoverageRequest, _ctx: &VnodeCtx) -> Result<CoverageReply> {
        match req {
            CoverageRequest::Stats => Ok(CoverageReply::OpsCount(self.ops_count)),
        }
    }

    fn handoff_items(&self) -> Result<Vec<Vec<u8>>> {
        if self.ops_count == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![self.ops_count.to_be_bytes().to_vec()])
    }

    fn handle_handoff_data(&mut self, item: &[u8], ctx: &mut VnodeCtx) -> Result<()> {
        // Counts merge by addition: the receiver may already have counted
        // commands forwarded to it while the handoff ran.
        let n = decode_u64(item, "handoff item")?;
        // An item from outside may say anything: a count past u64::MAX is
        // corrupt, not a reason to wrap or panic.
        let total = self
            .ops_count
            .checked_add(n)
            .ok_or_else(|| Error::Corrupt {
                what: "handoff item".into(),
                message: format!("{n} more operations overflow the count {}", self.ops_count),
            })?;
        self.set_count(total, ctx);
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.ops_count == 0
    }

    fn delete(&mut self, ctx: &mut VnodeCtx) -> Result<()> {
        self.ops_count = 0;
        ctx.remove_all();
        Ok(())
    }
}

const TAG_PING: u8 = 1;
const TAG_ADD: u8 = 2;

fn unknown(what: &str, bytes: &[u8]) -> Error {
    Error::UnknownCommand {
        partition: "-".into(),
        command: format!("{what} {:02x?}", &bytes[..bytes.len().min(17)]),
    }
}

fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_be_bytes(b))
}

impl Wire for Command {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Command::Ping => buf.push(TAG_PING),
            Command::Add { a, b } => {
                buf.push(TAG_ADD);
                buf.extend_from_slice(&a.to_be_bytes());
                buf.extend_from_slice(&b.to_be_bytes());
            }
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [TAG_PING] => Ok(Command::Ping),
            [TAG_ADD, ..] if bytes.len() == 17 => match (i64_at(bytes, 1), i64_at(bytes, 9)) {
                (Some(a), Some(b)) => Ok(Command::Add { a, b }),
                _ => Err(unknown("command", bytes)),
            },
            _ => Err(unknown("command", bytes)),
        }
    }
}

impl Wire for Reply {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Reply::Pong => buf.push(TAG_PING),
            Reply::Sum(s) => {
                buf.push(TAG_ADD);
                buf.extend_from_slice(&s.to_be_bytes());
            }
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [TAG_PING] => Ok(Reply::Pong),
            [TAG_ADD, ..] => i64_at(bytes, 1)
                .filter(|_| bytes.len() == 9)
                .map(Reply::Sum)
                .ok_or_else(|| unknown("reply", bytes)),
            _ => Err(unknown("reply", bytes)),
        }
    }
}

impl Wire for CoverageRequest {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(1);
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [1] => Ok(CoverageRequest::Stats),
            _ => Err(unknown("coverage request", bytes)),
        }
    }
}

impl Wire for CoverageReply {
    fn encode(&self, buf: &mut Vec<u8>) {
        let CoverageReply::OpsCount(n) = self;
        buf.extend_from_slice(&n.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        decode_u64(bytes, "coverage reply").map(CoverageReply::OpsCount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for cmd in [Command::Ping, Command::Add { a: -2, b: i64::MAX }] {
            let mut buf = Vec::new();
            cmd.encode(&mut buf);
            assert_eq!(Command::decode(&buf).expect("decodes"), cmd);
        }
    }

    #[test]
    fn unknown_commands_are_errors() {
        for bytes in [&[][..], &[9][..], &[TAG_ADD, 1, 2][..]] {
            let err = Command::decode(bytes).expect_err("unknown");
            assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
        }
    }
}
