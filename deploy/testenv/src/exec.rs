//! `kubectl exec`, as far as the test environment can offer it.
//!
//! The stand-in has no streaming API, so exec is not served through the API
//! server. Instead, each time the stand-in starts a container it records what
//! that container was started with (the resolved environment, working
//! directory, mounts and the image's host binary) in
//! `<kubelet-state>/pods/<ns>/<pod>_<uid>/exec/<container>.json`, and
//! [`command`] runs a process the same way: `flavio ping` then sees the pod's
//! `FLAVIO_NODE` and `FLAVIO_COOKIE_FILE` (rewritten to the host path of the
//! cookie volume) exactly as the container does. The record goes away with the
//! pod's directory.
//!
//! Arguments are mount-rewritten (so `cat /etc/flavio/cookie/cookie` reads the
//! volume) but not `$(VAR)`-expanded, as with `kubectl exec`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths::{Mount, rewrite_value};
use crate::standin::resolve_program;
use crate::{Error, Result};

/// What a container was started with, as recorded by the stand-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The host binary the container's image maps to (its entrypoint).
    pub image_binary: PathBuf,
    /// The container's resolved environment, in order.
    pub env: Vec<(String, String)>,
    /// The container's working directory on the host.
    pub cwd: PathBuf,
    /// The container's mounts: container path and host path.
    pub mounts: Vec<(String, PathBuf)>,
}

/// The record file of `container` in the pod directory `pod_dir`.
pub fn spec_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join("exec").join(format!("{container}.json"))
}

/// Writes the record; owner-only, since the environment can hold secrets.
pub fn write_spec(pod_dir: &Path, container: &str, spec: &ExecSpec) -> Result<()> {
    let path = spec_path(pod_dir, container);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let body = serde_json::to_vec_pretty(spec)?;
    // Written under a temporary name and renamed, so a concurrent reader never
    // sees half a record when a container restarts.
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&body).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// Reads the record of `container` of pod `namespace/pod` with `uid`, under
/// the stand-in's state directory (`<testenv-state>/kubelet`).
pub fn read_spec(
    kubelet_state: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
) -> Result<ExecSpec> {
    let pod_dir = kubelet_state
        .join("pods")
        .join(namespace)
        .join(format!("{pod}_{uid}"));
    let path = spec_path(&pod_dir, container);
    let text = std::fs::read(&path).map_err(|e| {
        Error::io(
            &path,
            std::io::Error::new(
                e.kind(),
                format!(
                    "container {container:?} of pod {namespace}/{pod} is not running here: {e}"
                ),
            ),
        )
    })?;
    Ok(serde_json::from_slice(&text)?)
}

/// A command running `argv` "in" the container described by `spec`.
///
/// `argv[0]` resolves as in the container: the image's binary by its base
/// name (`flavio`), else the container's `PATH` or an absolute host path.
pub fn command(spec: &ExecSpec, argv: &[String]) -> Result<std::process::Command> {
    let mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|(c, h)| Mount::new(c, h.clone()))
        .collect();
    let args: Vec<String> = argv.iter().map(|a| rewrite_value(a, &mounts)).collect();
    let prog = resolve_program(
        args.first().map(String::as_str),
        Some(&spec.image_binary),
        &spec.env,
    )?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args.iter().skip(1))
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.cwd);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_command() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let pod_dir = dir.path().join("pods/ns/p_uid1");
        let cookie = dir.path().join("cookie-volume");
        std::fs::create_dir_all(&cookie).map_err(|e| Error::io(&cookie, e))?;
        std::fs::write(cookie.join("cookie"), "secret").map_err(|e| Error::io(&cookie, e))?;
        let spec = ExecSpec {
            image_binary: PathBuf::from("/bin/true"),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("FLAVIO_NODE".into(), "127.0.0.10:10017".into()),
            ],
            cwd: dir.path().to_path_buf(),
            mounts: vec![("/etc/flavio/cookie".into(), cookie.clone())],
        };
        write_spec(&pod_dir, "c", &spec)?;
        let back = read_spec(dir.path(), "ns", "p", "uid1", "c")?;
        assert_eq!(back, spec);
        assert!(read_spec(dir.path(), "ns", "p", "other-uid", "c").is_err());

        // The environment is the container's only, and paths under mounts
        // reach the volume's host directory.
        let out = command(
            &back,
            &["sh".into(), "-c".into(), "echo $FLAVIO_NODE".into()],
        )?
        .output()
        .map_err(|e| Error::io("sh", e))?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "127.0.0.10:10017\n");
        let out = command(&back, &["cat".into(), "/etc/flavio/cookie/cookie".into()])?
            .output()
            .map_err(|e| Error::io("cat", e))?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "secret");
        Ok(())
    }
}
