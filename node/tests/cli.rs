//! The real `flavio` binary end to end: ping, add and stats through the CLI,
//! persistence across SIGKILL and SIGTERM, and every bad input's message and
//! exit code.

mod common;

use std::collections::BTreeSet;

use common::{NodeProc, flavio, stderr};

fn partitions(add: &serde_json::Value) -> BTreeSet<String> {
    add["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r["partition"].as_str().expect("partition").to_string())
        .collect()
}

fn total(node: &NodeProc) -> u64 {
    let s = node.json(&["stats"]);
    assert_eq!(s["partial"], false, "{s}");
    s["total_ops"].as_u64().expect("total_ops")
}

#[test]
fn ping_add_stats_survive_sigkill_and_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = NodeProc::start(&data, dir.path(), &[]);

    let pong = node.ok(&["ping"]);
    let partition = pong.strip_prefix("pong ").expect("pong <partition>").trim();
    assert!(
        !partition.is_empty() && partition.bytes().all(|b| b.is_ascii_digit()),
        "{pong}"
    );

    // The same A B always reaches the same three partitions.
    let first = node.json(&["add", "2", "5"]);
    assert_eq!(first["sum"], 7);
    let parts = partitions(&first);
    assert_eq!(parts.len(), 3, "{first}");
    for _ in 0..4 {
        let again = node.json(&["add", "2", "5"]);
        assert_eq!(partitions(&again), parts);
        for r in again["replicas"].as_array().expect("replicas") {
            assert_eq!(r["sum"], 7);
            assert_eq!(r["node"], "flavio1@127.0.0.1");
        }
    }
    // Client options go before the subcommand too, as kubectl's do.
    let out = flavio(&node.home)
        .args(["--node", &node.addr, "--output", "json", "add", "2", "5"])
        .output()
        .expect("run flavio");
    assert!(out.status.success(), "{}", stderr(&out));
    let before: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(partitions(&before), parts);
    let out = flavio(&node.home)
        .args(["--node", &node.addr, "admin", "member-status"])
        .output()
        .expect("run flavio");
    assert!(out.status.success(), "{}", stderr(&out));
    // Text output: the sum, then one line per replica.
    let text = node.ok(&["add", "-3", "10"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "7");
    assert_eq!(lines.len(), 4, "{text}");
    let mut adds = 7;
    for i in 0..20 {
        node.ok(&["add", &i.to_string(), "1"]);
        adds += 1;
    }
    assert_eq!(total(&node), 3 * adds);

    // Stats lists only vnodes with operations unless --all.
    let some = node.json(&["stats"]);
    let all = node.json(&["stats", "--all"]);
    assert_eq!(all["vnodes"].as_array().expect("vnodes").len(), 64);
    assert!(some["vnodes"].as_array().expect("vnodes").len() < 64);
    for v in some["vnodes"].as_array().expect("vnodes") {
        assert!(v["ops_count"].as_u64().expect("count") > 0);
        assert!(v["partition"].is_string());
    }

    // kill -9: every acknowledged add is still counted after a restart.
    node.kill9();
    let node = NodeProc::start(&data, dir.path(), &[]);
    assert_eq!(total(&node), 3 * adds);
    node.ok(&["add", "2", "5"]);
    adds += 1;

    // A graceful stop flushes and exits 0.
    let status = node.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");
    let node = NodeProc::start(&data, dir.path(), &[]);
    assert_eq!(total(&node), 3 * adds);
    drop(node);

    // The directory belongs to a 64-partition ring.
    let out = flavio(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--ring-size", "128"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("holds a ring of size 64"), "{err}");
    assert!(err.contains("ring size 128"), "{err}");
}

/// One line on stderr, the exit code, and a fragment of the message.
fn assert_fails(out: &std::process::Output, code: i32, fragment: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err:?}"
    );
    assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn bad_inputs_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProc::start(&dir.path().join("data"), dir.path(), &[]);

    assert_fails(&node.cli(&["add", "2", "x"]), 2, "invalid value 'x'");
    assert_fails(
        &node.cli(&["add", "2"]),
        2,
        "required arguments were not provided: <B>",
    );
    assert_fails(&node.cli(&["add"]), 2, "<A> <B>");
    assert_fails(
        &node.cli(&["add", "9223372036854775807", "1"]),
        2,
        "9223372036854775807 + 1 overflows a signed 64-bit integer",
    );
    assert_fails(
        &node.cli(&["add", "99999999999999999999", "1"]),
        2,
        "invalid value '99999999999999999999'",
    );
    assert_fails(
        &node.cli(&["add", "1", "2", "-n", "2", "-w", "3"]),
        2,
        "need 1 <= W <= N",
    );
    assert_fails(
        &node.cli(&["add", "1", "2", "-n", "0"]),
        2,
        "n must be at least 1",
    );
    assert_fails(&node.cli(&["add", "1", "2", "-n", "65"]), 2, "ring size");
    assert_fails(&node.cli(&["frobnicate"]), 2, "unrecognized subcommand");

    // Wrong cookie: refused by the node.
    let out = flavio(dir.path())
        .env("FLAVIO_COOKIE", "not-the-cookie")
        .args(["ping", "--node", &node.addr])
        .output()
        .expect("run");
    assert_fails(&out, 1, "permission denied: wrong cluster cookie");

    // No cookie anywhere: a usage error before any call.
    let out = flavio(dir.path())
        .env_remove("FLAVIO_COOKIE")
        .args(["ping", "--node", &node.addr])
        .output()
        .expect("run");
    assert_fails(&out, 2, "no cluster cookie");

    // A cookie file that does not exist.
    let out = flavio(dir.path())
        .args([
            "ping",
            "--cookie-file",
            "/nonexistent/cookie",
            "--node",
            &node.addr,
        ])
        .output()
        .expect("run");
    assert_fails(&out, 2, "cannot read cookie file /nonexistent/cookie");

    // Addresses that cannot be a node's: said so, not "connection refused".
    for bad in ["127.0.0.1:99999", "localhost", "127.0.0.1:0", ":10017"] {
        let out = flavio(dir.path())
            .args(["--node", bad, "ping"])
            .output()
            .expect("run");
        assert_fails(&out, 2, "expected HOST:PORT");
    }
    let out = flavio(dir.path())
        .args(["add", "1", "2", "--timeout-ms", "0", "--node", &node.addr])
        .output()
        .expect("run");
    assert_fails(&out, 2, "--timeout-ms");

    // Nobody listening.
    let port = common::free_port();
    let out = flavio(dir.path())
        .args(["ping", "--node", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run");
    assert_fails(&out, 1, "cannot reach node");
    let out = flavio(dir.path())
        .args(["ping", "--node", "not an address"])
        .output()
        .expect("run");
    assert_fails(&out, 2, "invalid node address");

    // Server-side bad settings.
    for (args, fragment) in [
        (vec!["--ring-size", "50"], "invalid ring size 50"),
        (vec!["--ring-size", "2048"], "invalid ring size 2048"),
        (
            vec!["--n-val", "2", "--w-val", "3"],
            "need 1 <= --w-val <= --n-val",
        ),
        (vec!["--listen", "nowhere"], "invalid value 'nowhere'"),
    ] {
        let out = common::refused_output(
            flavio(dir.path())
                .arg("serve")
                .arg("--data-dir")
                .arg(dir.path().join("other"))
                .args(&args),
        );
        assert_fails(&out, 2, fragment);
    }

    // Nothing was counted by any of the refused requests.
    let s = node.json(&["stats"]);
    assert_eq!(s["total_ops"], 0, "{s}");
}

#[test]
fn cookie_from_file_and_home() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cookie_file = dir.path().join("cookie");
    std::fs::write(&cookie_file, "file-cookie\n").expect("write cookie");
    let cookie_arg = cookie_file.to_str().expect("utf-8 path");
    let node = NodeProc::start(
        &dir.path().join("data"),
        dir.path(),
        &["--cookie-file", cookie_arg],
    );
    // The test cookie in FLAVIO_COOKIE is not this node's.
    assert_eq!(node.cli(&["ping"]).status.code(), Some(1));
    let out = node.cli(&["ping", "--cookie-file", cookie_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flavio(dir.path())
        .env_remove("FLAVIO_COOKIE")
        .env("FLAVIO_COOKIE_FILE", &cookie_file)
        .args(["ping", "--node", &node.addr])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
}
