//! The kubelet's log endpoint, so `kubectl logs` works.
//!
//! The API server proxies `kubectl logs` to `https://<node InternalIP>:<port>/
//! containerLogs/<ns>/<pod>/<container>`. This module answers exactly that path
//! over TLS with a minimal HTTP/1.1 responder: the container's output file
//! (all runs of the pod), `tailLines` honoured, `follow=true` streaming new
//! output until the client goes away. Client certificates are not checked and
//! nothing else of the kubelet API (exec, attach, port-forward, stats) exists.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{Error, Result};

/// Output files of a container, oldest first: `<ns>_<pod>_<uid8>_<container>.log`.
pub fn container_log_files(log_dir: &Path, ns: &str, pod: &str, container: &str) -> Vec<PathBuf> {
    let prefix = format!("{ns}_{pod}_");
    let suffix = format!("_{container}.log");
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.starts_with(&prefix)
                    && n.ends_with(&suffix)
                    && n.len() == prefix.len() + 8 + suffix.len()
            })
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

fn serve_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Serve(format!("{what}: {e}"))
}

/// Serves `/containerLogs` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, cert: &Path, key: &Path, log_dir: PathBuf) -> Result<()> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| serve_error("reading certificate", e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| serve_error("parsing certificate", e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| serve_error("reading key", e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| serve_error("TLS versions", e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| serve_error("TLS config", e))?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listen {addr}"), e))?;
    tracing::info!(%addr, "serving container logs");
    let log_dir = Arc::new(log_dir);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let log_dir = Arc::clone(&log_dir);
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = handle(tls, &log_dir).await;
            }
        });
    }
}

/// Parsed `/containerLogs/...` request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogRequest {
    pub ns: String,
    pub pod: String,
    pub container: String,
    pub follow: bool,
    pub tail_lines: Option<usize>,
}

/// Parses the request line `GET /containerLogs/ns/pod/ctr?follow=true HTTP/1.1`.
pub(crate) fn parse_request_line(line: &str) -> Option<LogRequest> {
    let mut parts = line.split_whitespace();
    if parts.next()? != "GET" {
        return None;
    }
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut segs = path.strip_prefix("/containerLogs/")?.split('/');
    let (ns, pod, container) = (segs.next()?, segs.next()?, segs.next()?);
    if segs.next().is_some() {
        return None;
    }
    let mut req = LogRequest {
        ns: ns.into(),
        pod: pod.into(),
        container: container.into(),
        follow: false,
        tail_lines: None,
    };
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("follow", v)) => req.follow = v == "true" || v == "1",
            Some(("tailLines", v)) => req.tail_lines = v.parse().ok(),
            _ => {}
        }
    }
    Some(req)
}

fn tail(text: &[u8], lines: Option<usize>) -> &[u8] {
    let Some(n) = lines else { return text };
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut count = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == n {
                return &text[i + 1..];
            }
        }
    }
    if n == 0 { &text[text.len()..] } else { text }
}

async fn handle<S>(mut stream: S, log_dir: &Path) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let first = text.lines().next().unwrap_or_default();
    let req = parse_request_line(first);
    let file = req
        .as_ref()
        .and_then(|r| container_log_files(log_dir, &r.ns, &r.pod, &r.container).pop());
    let (Some(req), Some(file)) = (req, file) else {
        let msg = "no such container log\n";
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        );
        stream.write_all(resp.as_bytes()).await?;
        return stream.shutdown().await;
    };
    let content = tokio::fs::read(&file).await?;
    let body = tail(&content, req.tail_lines);
    if !req.follow {
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(resp.as_bytes()).await?;
        stream.write_all(body).await?;
        return stream.shutdown().await;
    }
    // Follow: the body ends when the connection closes.
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        .await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut pos = content.len() as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(mut f) = tokio::fs::File::open(&file).await else {
            return stream.shutdown().await;
        };
        let len = f.metadata().await?.len();
        if len > pos {
            f.seek(std::io::SeekFrom::Start(pos)).await?;
            let mut more = Vec::new();
            f.read_to_end(&mut more).await?;
            pos += more.len() as u64;
            stream.write_all(&more).await?;
            stream.flush().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_requests() {
        let r =
            parse_request_line("GET /containerLogs/ns/p-0/main?follow=true&tailLines=5 HTTP/1.1");
        assert_eq!(
            r,
            Some(LogRequest {
                ns: "ns".into(),
                pod: "p-0".into(),
                container: "main".into(),
                follow: true,
                tail_lines: Some(5),
            })
        );
        assert!(parse_request_line("GET /exec/ns/p/c HTTP/1.1").is_none());
        assert!(parse_request_line("POST /containerLogs/ns/p/c HTTP/1.1").is_none());
    }

    #[test]
    fn tails_lines() {
        assert_eq!(tail(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", Some(5)), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(tail(b"a\nb\n", None), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", Some(0)), b"");
    }
}
