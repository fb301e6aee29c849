//! The image map: which host binary, and which arguments after it, stand for a
//! container image's entrypoint.
//!
//! There are no images here. A pod's image is looked up in a small text file
//! (`IMAGE = /host/binary [ARG...]` per line, `#` comments; a relative binary
//! path is taken relative to the file). The arguments are the rest of the
//! image's `ENTRYPOINT`, so that a container without `command` runs what the
//! real image would (`flavio-operator run` + the pod's args), and one with
//! `command` replaces the entrypoint, arguments included, as Kubernetes does.
//! Lookup tries the exact reference, then the reference without tag or digest,
//! then `*`. The file is read again for every container start, so entries can
//! be added while the stand-in runs. Image defaults other than the entrypoint
//! (CMD, env, workdir) are not modelled; binary paths cannot hold spaces.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A parsed image map.
#[derive(Clone, Debug, Default)]
pub struct ImageMap {
    entries: Vec<(String, Entrypoint)>,
}

/// What an image's entrypoint is here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entrypoint {
    /// The host binary.
    pub binary: PathBuf,
    /// The entrypoint's arguments after the binary.
    pub args: Vec<String>,
}

/// Strips a `:tag` and/or `@digest` from an image reference.
pub fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

impl ImageMap {
    /// Parses map text; relative binaries resolve against `base`.
    pub fn parse(text: &str, base: &Path, origin: &Path) -> Result<Self> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (image, bin) = line
                .split_once('=')
                .map(|(a, b)| (a.trim(), b.trim()))
                .or_else(|| {
                    line.split_once(char::is_whitespace)
                        .map(|(a, b)| (a.trim(), b.trim()))
                })
                .ok_or_else(|| Error::ImageMap {
                    path: origin.to_path_buf(),
                    line: i + 1,
                    message: "expected `IMAGE = /path/to/binary`".into(),
                })?;
            if image.is_empty() || bin.is_empty() {
                return Err(Error::ImageMap {
                    path: origin.to_path_buf(),
                    line: i + 1,
                    message: "empty image or binary".into(),
                });
            }
            let mut words = bin.split_whitespace();
            let bin = Path::new(words.next().unwrap_or_default());
            let args: Vec<String> = words.map(str::to_string).collect();
            let bin = if bin.is_absolute() {
                bin.to_path_buf()
            } else {
                base.join(bin)
            };
            entries.push((image.to_string(), Entrypoint { binary: bin, args }));
        }
        Ok(ImageMap { entries })
    }

    /// Reads a map file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("/"));
        Self::parse(&text, base, path)
    }

    /// The host binary standing for `image`, if mapped.
    pub fn lookup(&self, image: &str) -> Option<&Path> {
        self.entrypoint(image).map(|e| e.binary.as_path())
    }

    /// The entrypoint standing for `image`, if mapped.
    pub fn entrypoint(&self, image: &str) -> Option<&Entrypoint> {
        let repo = image_repository(image);
        self.entries
            .iter()
            .find(|(k, _)| k == image)
            .or_else(|| self.entries.iter().find(|(k, _)| k == repo))
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|(k, _)| image_repository(k) == repo && !k.contains(':'))
            })
            .or_else(|| self.entries.iter().find(|(k, _)| k == "*"))
            .map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest() {
        assert_eq!(image_repository("flaviodb/flavio:dev"), "flaviodb/flavio");
        assert_eq!(image_repository("reg:5000/a/b"), "reg:5000/a/b");
        assert_eq!(image_repository("reg:5000/a/b:1@sha256:x"), "reg:5000/a/b");
    }

    #[test]
    fn lookup_order() -> Result<()> {
        let m = ImageMap::parse(
            "# comment\nflaviodb/flavio:dev = bin/flavio\ntestenv/shell /bin/sh\n",
            Path::new("/repo/target"),
            Path::new("map"),
        )?;
        assert_eq!(
            m.lookup("flaviodb/flavio:dev"),
            Some(Path::new("/repo/target/bin/flavio"))
        );
        assert_eq!(m.lookup("flaviodb/flavio:other"), None);
        assert_eq!(m.lookup("testenv/shell:latest"), Some(Path::new("/bin/sh")));
        assert_eq!(m.lookup("nginx"), None);
        Ok(())
    }

    #[test]
    fn entrypoint_arguments_follow_the_binary() -> Result<()> {
        let m = ImageMap::parse(
            "op = /bin/flavio-operator run\nnode=bin/flavio\n",
            Path::new("/t"),
            Path::new("map"),
        )?;
        let e = m.entrypoint("op:1").expect("op mapped");
        assert_eq!(e.binary, Path::new("/bin/flavio-operator"));
        assert_eq!(e.args, ["run"]);
        assert_eq!(m.entrypoint("node").map(|e| e.args.len()), Some(0));
        Ok(())
    }

    #[test]
    fn bad_line_is_an_error() {
        assert!(ImageMap::parse("justone\n", Path::new("/"), Path::new("m")).is_err());
    }
}
