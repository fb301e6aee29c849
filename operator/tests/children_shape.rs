//! Reconcile-level test of the children's exact shape, against a mocked API
//! server (tower-test): `apply_children` must send one server-side apply per
//! child, with our field manager and force, to the right URL, and the bodies
//! must equal the golden files in `tests/golden/` (`UPDATE_GOLDENFILES=1`
//! rewrites them; review the diff).

use std::path::PathBuf;
use std::sync::Arc;

use flavio_operator::controller::{Context, apply_children};
use flavio_operator::crd::FlavioCluster;
use flavio_operator::metrics::Metrics;
use http::{Request, Response};
use kube::client::Body;

fn cluster(address_mode: &str) -> FlavioCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "flaviodb.io/v1alpha1",
        "kind": "FlavioCluster",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "1234-uid", "generation": 1},
        "spec": {
            "replicas": 3,
            "image": "flaviodb/flavio:0.1.0",
            "addressMode": address_mode,
            "storage": {"size": "2Gi", "storageClassName": "fast"},
            "nodeSelector": {"disk": "ssd"}
        }
    }))
    .expect("cluster")
}

fn golden(name: &str, got: &serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = serde_json::to_string_pretty(got).expect("json") + "\n";
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(want == text, "{name} differs from the golden file:\n{text}");
}

async fn run(address_mode: &str, suffix: &str) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "ns");
    let ctx = Context::new(client, Arc::new(Metrics::new()), true);
    let fc = cluster(address_mode);
    let naming = flavio_operator::children::naming(&fc).expect("naming");
    let server = tokio::spawn(async move {
        let expected = [
            (
                "/api/v1/namespaces/ns/services/demo-headless",
                "headless-service",
            ),
            ("/api/v1/namespaces/ns/services/demo", "client-service"),
            (
                "/apis/apps/v1/namespaces/ns/statefulsets/demo",
                "statefulset",
            ),
            (
                "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/demo",
                "pdb",
            ),
        ];
        let mut bodies = Vec::new();
        for (path, name) in expected {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), http::Method::PATCH, "{name}");
            assert_eq!(req.uri().path(), path, "{name}");
            let q = req.uri().query().unwrap_or_default().to_string();
            assert!(
                q.contains("fieldManager=flavio-operator") && q.contains("force=true"),
                "{q}"
            );
            assert_eq!(
                req.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/apply-patch+yaml")
            );
            let body = req.into_body().collect_bytes().await.expect("body");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json body");
            send.send_response(
                Response::builder()
                    .body(Body::from(body.to_vec()))
                    .expect("response"),
            );
            bodies.push((name, v));
        }
        bodies
    });
    apply_children(&ctx, &fc, &naming, 5, 0)
        .await
        .expect("apply");
    for (name, v) in server.await.expect("server") {
        golden(&format!("{name}{suffix}.json"), &v);
    }
}

#[tokio::test]
async fn children_shape_dns() {
    run("dns", "").await;
}

#[tokio::test]
async fn statefulset_advertises_pod_ip_in_pod_ip_mode() {
    let fc = cluster("podIP");
    let naming = flavio_operator::children::naming(&fc).expect("naming");
    let sts = flavio_operator::children::statefulset(&fc, &naming, 3, 0).expect("sts");
    let v = serde_json::to_value(&sts).expect("json");
    let env = &v["spec"]["template"]["spec"]["containers"][0]["env"];
    let adv = env
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "FLAVIO_ADVERTISE")
        .expect("advertise");
    assert_eq!(adv["value"], "$(POD_IP):10017");
    // The name stays the stable DNS name in both modes.
    let name = env
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "FLAVIO_NAME")
        .expect("name");
    assert_eq!(name["value"], "flavio@$(POD_NAME).demo-headless.ns.svc");
}
