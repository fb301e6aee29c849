//! Mount-path rewriting: how a pod's container paths reach host directories.
//!
//! Pods run as host processes, so a volume mounted at `/var/lib/flavio` is a host
//! directory instead. A value that *starts* with a mount path (or a `--flag=` /
//! `KEY=` value whose right side does) is rewritten to the host directory; the
//! longest matching mount wins. Paths mentioned in the middle of a string (inside
//! a shell script, say) are left alone: scripts should take such paths from env.

use std::path::{Path, PathBuf};

/// One container mount: where the container sees it and where it lives on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The container path, without a trailing slash.
    pub container: String,
    /// The host directory (or file) standing for it.
    pub host: PathBuf,
}

impl Mount {
    /// A mount of `host` at `container`.
    pub fn new(container: &str, host: impl Into<PathBuf>) -> Self {
        let trimmed = container.trim_end_matches('/');
        Mount {
            container: if trimmed.is_empty() {
                "/".to_string()
            } else {
                trimmed.to_string()
            },
            host: host.into(),
        }
    }
}

/// Rewrites a whole path if it lies under one of `mounts`.
pub fn rewrite_path(value: &str, mounts: &[Mount]) -> Option<String> {
    let best = mounts
        .iter()
        .filter(|m| {
            value == m.container
                || (m.container == "/" && value.starts_with('/'))
                || value
                    .strip_prefix(m.container.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|m| m.container.len())?;
    let rest = value[best.container.len()..].trim_start_matches('/');
    let host: &Path = &best.host;
    Some(if rest.is_empty() {
        host.display().to_string()
    } else {
        host.join(rest).display().to_string()
    })
}

/// Rewrites `value` as an argument or env value: a path, or `x=path`.
pub fn rewrite_value(value: &str, mounts: &[Mount]) -> String {
    if let Some(p) = rewrite_path(value, mounts) {
        return p;
    }
    if let Some((left, right)) = value.split_once('=')
        && right.starts_with('/')
        && let Some(p) = rewrite_path(right, mounts)
    {
        return format!("{left}={p}");
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<Mount> {
        vec![
            Mount::new("/var/lib/flavio", "/h/pvc/data-0"),
            Mount::new("/var/lib/flavio/cookie/", "/h/secret"),
            Mount::new("/etc/x", "/h/x"),
        ]
    }

    #[test]
    fn rewrites_paths_under_mounts() {
        let m = mounts();
        assert_eq!(rewrite_value("/var/lib/flavio", &m), "/h/pvc/data-0");
        assert_eq!(
            rewrite_value("/var/lib/flavio/ring", &m),
            "/h/pvc/data-0/ring"
        );
        assert_eq!(rewrite_value("/var/lib/flavio/cookie/c", &m), "/h/secret/c");
        assert_eq!(
            rewrite_value("--data-dir=/var/lib/flavio", &m),
            "--data-dir=/h/pvc/data-0"
        );
    }

    #[test]
    fn leaves_other_values_alone() {
        let m = mounts();
        assert_eq!(rewrite_value("/var/lib/flaviox", &m), "/var/lib/flaviox");
        assert_eq!(rewrite_value("serve", &m), "serve");
        assert_eq!(rewrite_value("echo /etc/x", &m), "echo /etc/x");
        assert_eq!(rewrite_value("a=b", &m), "a=b");
    }
}
