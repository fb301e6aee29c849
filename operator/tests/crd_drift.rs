//! The committed CRD (`deploy/crd/flaviocluster.yaml`) must equal what
//! `flavio-operator crd` prints. `UPDATE_GOLDENFILES=1` rewrites it.

use std::path::PathBuf;

#[test]
fn committed_crd_matches_generated() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crd/flaviocluster.yaml");
    let generated = flavio_operator::crd::crd_yaml().expect("CRD serialises");
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        std::fs::write(&path, &generated).expect("write CRD");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("deploy/crd/flaviocluster.yaml exists");
    assert!(
        committed == generated,
        "deploy/crd/flaviocluster.yaml is stale: run `cargo run -p flavio-operator -- crd > deploy/crd/flaviocluster.yaml` (or UPDATE_GOLDENFILES=1 cargo test -p flavio-operator --test crd_drift)"
    );
}

#[test]
fn crd_has_scale_status_and_short_name() {
    let crd: serde_json::Value =
        serde_yaml::from_str(&flavio_operator::crd::crd_yaml().expect("CRD")).expect("YAML");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "fc");
    // An HPA can drive the scale subresource only with a selector.
    assert_eq!(
        v["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    assert_eq!(
        crd["metadata"]["labels"]["app.kubernetes.io/name"],
        "flavio-operator"
    );
    // The API server refuses what the schema can say (1.20 has no CEL).
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["ringSize"]["multipleOf"], 4.0);
    assert_eq!(spec["ringSize"]["minimum"], 8.0);
    assert_eq!(spec["handoffConcurrency"]["maximum"], 64.0);
    assert_eq!(spec["imagePullPolicy"]["enum"][2], "Never");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    assert!(v["subresources"]["status"].is_object());
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cols,
        ["Replicas", "Ready", "Members", "Phase", "Transfers", "Age"]
    );
    // 1.20 ignores CEL; none are emitted, so nothing relies on them.
    assert!(
        !serde_json::to_string(&crd)
            .expect("json")
            .contains("x-kubernetes-validations")
    );
}
