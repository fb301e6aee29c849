//! Every committed manifest (the CRD, the chart's rendered output with default
//! values and with every option on, the plain manifests, the example) parses
//! into its Kubernetes type with no unknown field, and every deliberately
//! broken fixture is caught. deploy/ci-packaging.sh checks beforehand that
//! the rendered files are what `helm template` prints today.

use std::path::{Path, PathBuf};

use flavio_manifests::{Object, Schemas, check_object, parse_documents, yaml_files};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(path: &Path) -> Vec<Object> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let origin = path
        .strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string();
    parse_documents(&origin, &text).unwrap_or_else(|e| panic!("{e}"))
}

/// Every object under deploy/ (but this crate's own fixtures) and the chart's
/// crds/.
fn committed() -> Vec<Object> {
    let r = repo();
    let fixtures = r.join("deploy/validate");
    let mut files = yaml_files(&r.join("deploy"), &[fixtures.as_path()]);
    files.extend(yaml_files(&r.join("charts/flavio/crds"), &[]));
    files.iter().flat_map(|f| load(f)).collect()
}

fn schemas() -> Schemas {
    Schemas::from_objects(&load(&repo().join("charts/flavio/crds/flaviocluster.yaml")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn kinds(objects: &[Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o.value["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_committed_and_rendered_manifest_is_valid() {
    let objects = committed();
    let schemas = schemas();
    let mut problems = Vec::new();
    for o in &objects {
        for e in check_object(&o.value, &schemas) {
            problems.push(format!("{}: {e}", o.origin));
        }
    }
    assert!(
        problems.is_empty(),
        "invalid manifests:\n{}",
        problems.join("\n")
    );
    // The files this test exists for were really read.
    for expected in [
        "deploy/crd/flaviocluster.yaml",
        "deploy/operator/rbac.yaml",
        "deploy/rendered/default.yaml",
        "deploy/rendered/all-options.yaml",
        "deploy/manifests/flavio-operator.yaml",
        "deploy/examples/flaviocluster.yaml",
        "charts/flavio/crds/flaviocluster.yaml",
    ] {
        assert!(
            objects.iter().any(|o| o.origin.starts_with(expected)),
            "{expected} was not validated"
        );
    }
    println!("{} objects valid", objects.len());
}

#[test]
fn every_option_renders_every_kind() {
    let all = load(&repo().join("deploy/rendered/all-options.yaml"));
    let k = kinds(&all);
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "NetworkPolicy",
        "FlavioCluster",
        "Job",
    ] {
        assert!(k.iter().any(|x| x == kind), "all-options lacks a {kind}");
    }
    // The default install is namespaced and creates no cluster; its one
    // cluster-wide grant is reading nodes (their zone labels).
    let objects = load(&repo().join("deploy/rendered/default.yaml"));
    let default = kinds(&objects);
    assert!(default.iter().any(|x| x == "Role"));
    assert!(!default.iter().any(|x| x == "FlavioCluster" || x == "Job"));
    let cluster_rules: Vec<&Value> = objects
        .iter()
        .filter(|o| o.value["kind"] == "ClusterRole")
        .map(|o| &o.value["rules"])
        .collect();
    assert_eq!(
        cluster_rules,
        vec![&serde_json::json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])]
    );
}

/// A chart-installed cluster is deleted by a pre-delete hook while the
/// operator still runs (else its finalizer would never run): the hook's Job
/// deletes exactly that cluster, runs restricted, and its Role may delete
/// nothing else.
#[test]
fn the_uninstall_hook_deletes_only_the_release_cluster() {
    let all = load(&repo().join("deploy/rendered/all-options.yaml"));
    let hooks: Vec<&Value> = all
        .iter()
        .map(|o| &o.value)
        .filter(|v| v["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete")
        .collect();
    let kinds: Vec<&str> = hooks.iter().filter_map(|v| v["kind"].as_str()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "Job"]);
    let job = hooks[3];
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["args"],
        serde_json::json!([
            "delete-cluster",
            "demo",
            "--namespace=flavio-system",
            "--timeout-seconds=240"
        ])
    );
    assert_eq!(pod["serviceAccountName"], hooks[0]["metadata"]["name"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    // Everything but the Job goes first (lower weight), so it can run.
    for h in &hooks[..3] {
        assert_eq!(h["metadata"]["annotations"]["helm.sh/hook-weight"], "-10");
    }
    let rules = &hooks[1]["rules"];
    assert_eq!(
        rules,
        &serde_json::json!([
            {"apiGroups": ["flaviodb.io"], "resources": ["flavioclusters"],
             "resourceNames": ["demo"], "verbs": ["get", "delete"]},
            {"apiGroups": ["flaviodb.io"], "resources": ["flavioclusters"],
             "verbs": ["list", "watch"]},
        ])
    );
}

#[test]
fn operator_pods_run_non_root_with_a_read_only_root_and_no_capabilities() {
    for file in [
        "deploy/rendered/default.yaml",
        "deploy/manifests/flavio-operator.yaml",
    ] {
        let objects = load(&repo().join(file));
        let d = objects
            .iter()
            .find(|o| o.value["kind"] == "Deployment")
            .unwrap_or_else(|| panic!("{file}: no Deployment"));
        let pod = &d.value["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
        let c = &pod["containers"][0]["securityContext"];
        assert_eq!(c["readOnlyRootFilesystem"], true, "{file}");
        assert_eq!(c["allowPrivilegeEscalation"], false, "{file}");
        assert_eq!(
            c["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{file}"
        );
    }
}

/// The chart's Roles/ClusterRoles for the operator (the uninstall hook's
/// aside) grant exactly what the operator's own RBAC manifest (written next
/// to its code) lists: no more, no less.
#[test]
fn chart_rbac_is_the_operators_least_privilege_list() {
    let rules_of = |file: &str| -> Vec<String> {
        let mut rules: Vec<String> = load(&repo().join(file))
            .into_iter()
            .filter(|o| o.value["kind"] == "Role" || o.value["kind"] == "ClusterRole")
            .filter(|o| {
                !o.value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("-uninstall")
            })
            .flat_map(|o| o.value["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| r.to_string())
            .collect();
        assert!(!rules.is_empty(), "{file}: no rules");
        rules.sort();
        rules
    };
    let operator = rules_of("deploy/operator/rbac.yaml");
    assert_eq!(rules_of("deploy/manifests/flavio-operator.yaml"), operator);
    assert_eq!(rules_of("deploy/rendered/default.yaml"), operator);
}

#[test]
fn the_chart_crd_is_byte_identical_to_the_committed_crd() {
    let read = |p: &str| std::fs::read(repo().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert!(
        read("charts/flavio/crds/flaviocluster.yaml") == read("deploy/crd/flaviocluster.yaml"),
        "charts/flavio/crds/flaviocluster.yaml differs from deploy/crd/flaviocluster.yaml"
    );
}

#[test]
fn the_example_is_four_members_on_a_64_ring() {
    let ex = load(&repo().join("deploy/examples/flaviocluster.yaml"));
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].value["spec"]["replicas"], 4);
    assert_eq!(ex[0].value["spec"]["ringSize"], 64);
}

/// Each fixture under fixtures/invalid names, in its first line
/// (`# expect: ...`), a piece of the error it must produce.
#[test]
fn broken_fixtures_are_caught() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/invalid");
    let schemas = schemas();
    let files = yaml_files(&dir, &[]);
    assert!(files.len() >= 8, "fixtures missing: {files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", f.display()));
        let objects =
            parse_documents(&f.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
        let errors: Vec<String> = objects
            .iter()
            .flat_map(|o| check_object(&o.value, &schemas))
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{}: expected an error containing {expect:?}, got {errors:?}",
            f.display()
        );
    }
}

/// The issue's own example: `replica:` for `replicas:` in a committed file
/// fails, in the chart's Deployment and in the example FlavioCluster.
#[test]
fn a_replicas_typo_in_committed_files_fails() {
    let schemas = schemas();
    for (file, kind) in [
        ("deploy/rendered/default.yaml", "Deployment"),
        ("deploy/examples/flaviocluster.yaml", "FlavioCluster"),
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("  replicas:"), "{file}");
        let broken = text.replace("  replicas:", "  replica:");
        let objects = parse_documents(file, &broken).unwrap_or_else(|e| panic!("{e}"));
        let o = objects
            .iter()
            .find(|o| o.value["kind"] == kind)
            .unwrap_or_else(|| panic!("{file}: no {kind}"));
        let errors = check_object(&o.value, &schemas);
        assert!(
            errors.iter().any(|e| e.contains("replica")),
            "{file}: the typo passed: {errors:?}"
        );
    }
}

/// The images' ENTRYPOINT (Dockerfiles for users, build-local.sh for CI) and
/// the test environment's image map, which stands in for it, agree: else pods
/// that pass on the test environment could fail in a real image (the
/// operator's `run` was once given twice this way).
#[test]
fn image_entrypoints_match_the_test_environments_image_map() {
    let read =
        |p: &str| std::fs::read_to_string(repo().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let entrypoints = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter_map(|l| {
                let l = l.trim().trim_start_matches("echo '");
                let json = l.strip_prefix("ENTRYPOINT ")?.trim_end_matches('\'');
                Some(serde_json::from_str(json).unwrap_or_else(|e| panic!("{l}: {e}")))
            })
            .collect()
    };
    let node = entrypoints(&read("deploy/images/node.Dockerfile"));
    let operator = entrypoints(&read("deploy/images/operator.Dockerfile"));
    assert_eq!(node, [["/usr/local/bin/flavio", "serve"]]);
    assert_eq!(operator, [["/usr/local/bin/flavio-operator", "run"]]);
    let local = entrypoints(&read("deploy/images/build-local.sh"));
    assert_eq!(
        local,
        [node[0].clone(), operator[0].clone()],
        "build-local.sh"
    );

    let map = read("deploy/testenv/testenv");
    for (image, ep) in [
        ("flaviodb/flavio", &node[0]),
        ("flaviodb/flavio-operator", &operator[0]),
    ] {
        let line = map
            .lines()
            .find(|l| l.starts_with(&format!("{image} = ")))
            .unwrap_or_else(|| panic!("no {image} line in the image map"));
        let words: Vec<&str> = line.split_whitespace().skip(2).collect();
        assert_eq!(
            &words[1..],
            &ep[1..],
            "{line}: the image's entrypoint arguments"
        );
    }
    let install = read("deploy/e2e/testenv-install.sh");
    assert!(
        install.contains("flaviodb/flavio-operator = $target/debug/flavio-operator run\""),
        "testenv-install.sh maps the operator image with its entrypoint's `run`"
    );
}

/// A DNS-1123 label: what Services (and most names) must be.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Issue 15: rendered with the default values, every option, and the longest
/// release name helm allows, every object's name is a valid DNS label,
/// distinct within its kind, and every object carries the
/// app.kubernetes.io/name and app.kubernetes.io/instance labels.
#[test]
fn rendered_names_are_valid_distinct_and_labelled() {
    for file in [
        "deploy/rendered/default.yaml",
        "deploy/rendered/all-options.yaml",
        "deploy/rendered/long-name.yaml",
    ] {
        let objects = load(&repo().join(file));
        assert!(!objects.is_empty(), "{file}");
        let mut seen = std::collections::HashSet::new();
        for o in &objects {
            let kind = o.value["kind"].as_str().unwrap_or_default();
            let name = o.value["metadata"]["name"].as_str().unwrap_or_default();
            assert!(
                dns_label(name),
                "{file}: {kind} name {name:?} is not a DNS label of at most 63 characters"
            );
            assert!(
                seen.insert((kind.to_string(), name.to_string())),
                "{file}: two {kind}s named {name}"
            );
            let labels = &o.value["metadata"]["labels"];
            for l in ["app.kubernetes.io/name", "app.kubernetes.io/instance"] {
                assert!(
                    labels[l].is_string(),
                    "{file}: {kind} {name} has no {l} label"
                );
            }
        }
    }
    // The longest name really is long: its objects were cut to fit.
    let long = load(&repo().join("deploy/rendered/long-name.yaml"));
    assert!(
        long.iter().any(|o| o.value["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.len() == 63)),
        "long-name.yaml should hold names cut at 63 characters"
    );
}
