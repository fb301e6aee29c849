//! Host processes standing for containers: spawning, signalling, pid files.
//!
//! Each container process is the leader of its own process group, so signals
//! reach whatever it forked too. For every live process a pid file
//! `<state>/pids/<pid>` holds the process's start time (field 22 of
//! `/proc/<pid>/stat`), so `testenv down` can kill leftovers of a crashed
//! stand-in without ever hitting a recycled pid.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::{Error, Result};

/// What a pid file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidRecord {
    /// The process id.
    pub pid: i32,
    /// Its start time in clock ticks since boot.
    pub start_time: u64,
}

/// Start time (clock ticks since boot) of `pid`, from `/proc`.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Is `record` still the same live (non-zombie) process?
pub fn is_alive(record: &PidRecord) -> bool {
    process_start_time(record.pid) == Some(record.start_time)
        && std::fs::read_to_string(format!("/proc/{}/stat", record.pid))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .and_then(|i| s.get(i + 2..i + 3).map(str::to_string))
            })
            .is_some_and(|state| state != "Z")
}

/// All pid files under `dir`.
pub fn read_pidfiles(dir: &Path) -> Vec<PidRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let start_time = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some(PidRecord { pid, start_time })
        })
        .collect()
}

/// A running container process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub child: Child,
    pub pid: i32,
    pidfile: PathBuf,
}

/// What to start.
pub(crate) struct Spawn<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub log: &'a Path,
    pub pid_dir: &'a Path,
}

impl Proc {
    /// Starts the process in its own process group, output appended to `log`.
    pub fn spawn(s: Spawn<'_>) -> Result<Proc> {
        let (prog, args) = s
            .argv
            .split_first()
            .ok_or_else(|| Error::container("RunContainerError", "empty command"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.log)
            .map_err(|e| Error::io(s.log, e))?;
        let log2 = log.try_clone().map_err(|e| Error::io(s.log, e))?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .env_clear()
            .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(s.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd
            .spawn()
            .map_err(|e| Error::container("RunContainerError", format!("{prog}: {e}")))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| Error::container("RunContainerError", "process exited at once"))?;
        let pidfile = s.pid_dir.join(pid.to_string());
        if let Some(st) = process_start_time(pid) {
            let _ = std::fs::write(&pidfile, format!("{st}\n"));
        }
        Ok(Proc {
            child,
            pid,
            pidfile,
        })
    }

    /// Sends `sig` to the process group (falls back to the process).
    pub fn signal(&self, sig: Signal) {
        if killpg(Pid::from_raw(self.pid), sig).is_err() {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), sig);
        }
    }

    /// Non-blocking exit check: `Some(exit_code)` once it has exited.
    pub fn try_exit(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.forget();
                Some(exit_code(status))
            }
            Ok(None) => None,
            Err(_) => {
                self.forget();
                Some(128)
            }
        }
    }

    fn forget(&self) {
        // Whatever is left in its process group goes with it.
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

/// Shell-style exit code: 128+signal when killed by a signal.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self() {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let st = process_start_time(me);
        assert!(st.is_some());
        let rec = PidRecord {
            pid: me,
            start_time: st.unwrap_or(0),
        };
        assert!(is_alive(&rec));
        assert!(!is_alive(&PidRecord {
            pid: me,
            start_time: rec.start_time + 1
        }));
    }
}
