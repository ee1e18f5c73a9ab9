//! deploy/daemonset.yaml against the Kubernetes API types: a misspelt or misplaced field fails
//! here instead of on a cluster.

use k8s_openapi::api::apps::v1::DaemonSet;

const MANIFEST: &str = include_str!("../../deploy/daemonset.yaml");

fn daemonset() -> (serde_json::Value, DaemonSet) {
    let raw: serde_json::Value = serde_yaml::from_str(MANIFEST).expect("deploy/daemonset.yaml is YAML");
    let typed: DaemonSet = serde_json::from_value(raw.clone()).expect("deploy/daemonset.yaml is a DaemonSet");
    (raw, typed)
}

#[test]
fn every_field_is_a_field_of_the_api() {
    // serde skips fields a type does not know; a round trip that loses nothing proves there were
    // none.
    let (raw, typed) = daemonset();
    let round_trip = serde_json::to_value(&typed).unwrap();
    assert_eq!(round_trip, raw, "a field of deploy/daemonset.yaml is not in the apps/v1 DaemonSet API");
}

#[test]
fn the_agent_runs_as_the_readme_says() {
    let (_, ds) = daemonset();
    let spec = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert!(spec
        .tolerations
        .unwrap()
        .iter()
        .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()));
    let container = &spec.containers[0];
    // What `cargo xtask image` tags, as the README's import steps name it.
    assert_eq!(container.image.as_deref(), Some(concat!("localhost/fastpath:", env!("CARGO_PKG_VERSION"))));
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let caps = security.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), vec!["ALL".to_string()]);
    assert_eq!(caps.add.unwrap(), vec!["BPF".to_string(), "NET_ADMIN".to_string(), "PERFMON".to_string()]);
    let env = container.env.clone().unwrap();
    let metrics = env.iter().find(|e| e.name == "FASTPATH_METRICS_ADDR").unwrap();
    assert!(metrics.value.as_deref().unwrap().starts_with("127.0.0.1:"), "metrics stay on loopback");
    for (probe, path) in [(&container.liveness_probe, "/healthz"), (&container.readiness_probe, "/readyz")] {
        let get = probe.clone().unwrap().http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.host.as_deref(), Some("127.0.0.1"));
    }
    let mount = &container.volume_mounts.clone().unwrap()[0];
    assert_eq!(mount.mount_path, "/sys/fs/bpf");
    let volume = &spec.volumes.unwrap()[0];
    assert_eq!(volume.host_path.clone().unwrap().path, "/sys/fs/bpf");
    assert!(container.resources.clone().unwrap().requests.is_some());
}
