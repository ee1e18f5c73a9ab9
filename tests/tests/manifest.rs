//! deploy/daemonset.yaml against the Kubernetes API types: a misspelt or misplaced field fails
//! here instead of on a cluster.

use k8s_openapi::{api::apps::v1::DaemonSet, apimachinery::pkg::util::intstr::IntOrString};

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
    let addr = |name: &str| -> std::net::SocketAddr {
        env.iter().find(|e| e.name == name).unwrap().value.as_deref().unwrap().parse().unwrap()
    };
    let (metrics, health) = (addr("FASTPATH_METRICS_ADDR"), addr("FASTPATH_HEALTH_ADDR"));
    assert!(health.ip().is_loopback(), "health stays on loopback");
    assert_ne!(metrics.port(), health.port(), "metrics and health apart");
    for (probe, path) in [(&container.liveness_probe, "/healthz"), (&container.readiness_probe, "/readyz")] {
        let get = probe.clone().unwrap().http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(get.port, IntOrString::Int(i32::from(health.port())), "{path} probes the health address");
    }
    let mount = &container.volume_mounts.clone().unwrap()[0];
    assert_eq!(mount.mount_path, "/sys/fs/bpf");
    let volume = &spec.volumes.unwrap()[0];
    assert_eq!(volume.host_path.clone().unwrap().path, "/sys/fs/bpf");
    assert!(container.resources.clone().unwrap().requests.is_some());
}

#[test]
fn it_follows_the_cluster_conventions() {
    let (_, ds) = daemonset();
    let template = ds.spec.unwrap().template;
    let spec = template.spec.unwrap();
    let container = &spec.containers[0];
    // Linux nodes only (the programs are Linux's), as felix and cilium-agent.
    assert_eq!(spec.node_selector.unwrap().get("kubernetes.io/os").map(String::as_str), Some("linux"));
    // The daemon's one-line error in `kubectl describe` when it exits.
    assert_eq!(container.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
    // The metrics port, by name, is the metrics address's port, and Prometheus is told so.
    let metrics: std::net::SocketAddr = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "FASTPATH_METRICS_ADDR")
        .and_then(|e| e.value.as_deref())
        .unwrap()
        .parse()
        .unwrap();
    assert!(metrics.ip().is_unspecified(), "Prometheus scrapes the node's address: {metrics}");
    let ports = container.ports.clone().unwrap();
    let port = ports.iter().find(|p| p.name.as_deref() == Some("metrics")).expect("a port named metrics");
    assert_eq!(port.container_port, i32::from(metrics.port()));
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    let annotations = template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations.get("prometheus.io/scrape").map(String::as_str), Some("true"));
    assert_eq!(annotations.get("prometheus.io/port"), Some(&metrics.port().to_string()));
    assert_eq!(annotations.get("prometheus.io/path").map(String::as_str), Some("/metrics"));
}
