//! What a sandbox is on Kubernetes: its pod and its workspace claim, as the
//! apiserver's objects. Pure functions of the config and the spec, so the
//! lock-down is unit-tested here and read back from a real cluster in
//! `tests/kube.rs`.

use super::super::{CreateSpec, LABEL_EXPIRES_AT, LABEL_KIND, LABEL_MANAGED, LABEL_SESSION};
use crate::config::SandboxConfig;
use crate::sandbox::LABEL_DEPLOYMENT;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::json;

/// The sandbox's one container.
pub const CONTAINER: &str = "sandbox";
/// Where the agent image's root is mounted; the agent is `/agent` in it.
pub const AGENT_DIR: &str = "/opt/replbox";
/// The agent, PID 1 of every sandbox pod (the Docker backend's path too).
pub const AGENT: &str = "/opt/replbox/agent";
/// Annotations (values of any length or alphabet, unlike labels).
pub const ANNOTATION_NAME: &str = "replbox.name";

/// A Kubernetes object name (DNS-1123 label: lower-case letters, digits
/// and `-`, at most 63) for `name`: itself when it is one and does not end
/// the way a hashed name does, else a readable part and a hash of the
/// whole, so two names never meet.
pub fn object_name(name: &str) -> String {
    let looks_hashed = name.len() > 17
        && name.as_bytes()[name.len() - 17] == b'-'
        && name[name.len() - 16..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = !looks_hashed
        && !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        return name.to_string();
    }
    use sha2::Digest;
    let hash = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..8]);
    let readable: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let readable = readable.trim_matches('-');
    if readable.is_empty() {
        format!("x-{hash}")
    } else {
        format!("{readable}-{hash}")
    }
}

/// Labels select (the server's own, its kind); the rest of what the
/// reaper reads goes in annotations.
fn metadata(
    config: &SandboxConfig,
    name: &str,
    session: &str,
    expires_at: i64,
    kind: &str,
) -> serde_json::Value {
    let mut annotations = json!({
        LABEL_SESSION: session,
        LABEL_EXPIRES_AT: expires_at.to_string(),
    });
    if let Some(d) = &config.deployment {
        annotations[LABEL_DEPLOYMENT] = json!(d);
    }
    json!({
        "name": name,
        "namespace": config.kube_namespace,
        "labels": {
            LABEL_MANAGED: object_name(&config.name_prefix),
            LABEL_KIND: kind,
            "app.kubernetes.io/managed-by": "replbox",
        },
        "annotations": annotations,
    })
}

/// The label selector of everything this server manages.
pub fn selector(config: &SandboxConfig) -> String {
    format!("{LABEL_MANAGED}={}", object_name(&config.name_prefix))
}

/// The workspace claim: the quota is its size, enforced by the volume.
pub fn claim(config: &SandboxConfig, name: &str, session: &str) -> PersistentVolumeClaim {
    let size = if config.workspace_quota_mb > 0 {
        config.workspace_quota_mb
    } else {
        1024
    };
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": format!("{size}Mi")}},
    });
    if let Some(class) = &config.kube_storage_class {
        spec["storageClassName"] = json!(class);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(config, name, session, 0, "workspace"),
        "spec": spec,
    }))
    .expect("a valid claim")
}

/// The pod: the agent as PID 1 from a read-only image volume, the Docker
/// backend's lock-down as securityContext, its limits as resources, /tmp a
/// size-limited memory volume, the workspace claim at /workspace, no
/// service account token, no service links, no host namespaces.
pub fn pod(config: &SandboxConfig, name: &str, claim: &str, spec: &CreateSpec) -> Pod {
    let (uid, gid) = crate::sandbox::user_ids(spec.user.as_deref().unwrap_or(&config.user));
    let image = spec.image.clone().unwrap_or_else(|| config.image.clone());
    let mut env: Vec<serde_json::Value> = spec
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    env.push(json!({"name": "REPLBOX_WORKSPACE", "value": "/workspace"}));
    let memory = format!("{}Mi", config.memory_mb);
    let cpu = format!("{}m", (config.cpus * 1000.0).round() as i64);
    let mut pod_spec = json!({
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "restartPolicy": "Never",
        "hostNetwork": false,
        "hostPID": false,
        "hostIPC": false,
        // A sandbox has no network to resolve names on.
        "dnsPolicy": "Default",
        "terminationGracePeriodSeconds": 1,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": uid,
            "runAsGroup": gid,
            // The workspace volume's group: its files are the user's.
            "fsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": CONTAINER,
            "image": image,
            "imagePullPolicy": config.kube_pull_policy,
            "command": [AGENT],
            "workingDir": "/workspace",
            // The agent's frames: the attach stream's stdin and stdout.
            "stdin": true,
            "stdinOnce": false,
            "tty": false,
            "env": env,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": config.readonly_root,
                "privileged": false,
                "capabilities": {"drop": ["ALL"]},
            },
            "resources": {
                // Memory is asked for in full: no sandbox is overcommitted.
                // Disk on the node: the container's log (the node's runtime
                // keeps what the agent writes to stdout) and its writable
                // layer. Past the limit the kubelet evicts this pod alone.
                "requests": {"cpu": "100m", "memory": memory, "ephemeral-storage": "64Mi"},
                "limits": {"cpu": cpu, "memory": memory, "ephemeral-storage": format!("{}Mi", config.kube_ephemeral_mb)},
            },
            "volumeMounts": [
                {"name": "agent", "mountPath": AGENT_DIR, "readOnly": true},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "workspace", "mountPath": "/workspace"},
            ],
        }],
        "volumes": [
            {"name": "agent", "image": {"reference": config.kube_agent_image, "pullPolicy": config.kube_pull_policy}},
            // A tmpfs of that size, counted in the pod's memory as Docker's is.
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": format!("{}Mi", config.tmp_mb)}},
            {"name": "workspace", "persistentVolumeClaim": {"claimName": claim}},
        ],
    });
    if let Some(class) = &config.kube_runtime_class {
        pod_spec["runtimeClassName"] = json!(class);
    }
    let mut meta = metadata(config, name, &spec.session, spec.expires_at, "sandbox");
    meta["annotations"][ANNOTATION_NAME] = json!(name);
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": pod_spec,
    }))
    .expect("a valid pod")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_valid_and_distinct() {
        assert_eq!(object_name("replbox-abc-1"), "replbox-abc-1");
        // A valid name shaped like another's hashed form is hashed too.
        let hashed = object_name("Task_One");
        assert_ne!(object_name(&hashed), hashed);
        let a = object_name("rbt-1-t-0123456789abcdef-Task_One");
        let b = object_name("rbt-1-t-0123456789abcdef-task-one");
        assert_ne!(a, b);
        for n in [a, object_name(&"x".repeat(200)), object_name("___")] {
            assert!(n.len() <= 63, "{n}");
            assert!(n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert!(!n.starts_with('-') && !n.ends_with('-'), "{n}");
        }
    }

    #[test]
    fn the_pod_is_locked_down() {
        let config = SandboxConfig {
            kube_runtime_class: Some("gvisor".into()),
            ..SandboxConfig::default()
        };
        let pod = pod(
            &config,
            "replbox-s",
            "replbox-ws-s",
            &CreateSpec {
                session: "s".into(),
                ..Default::default()
            },
        );
        let v = serde_json::to_value(&pod).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["enableServiceLinks"], false);
        assert_eq!(spec["runtimeClassName"], "gvisor");
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["securityContext"]["runAsUser"], 1000);
        let c = &spec["containers"][0];
        assert_eq!(c["command"][0], AGENT);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
        assert_eq!(c["resources"]["limits"]["cpu"], "1000m");
        assert_eq!(spec["volumes"][1]["emptyDir"]["sizeLimit"], "512Mi");
        assert_eq!(
            spec["volumes"][2]["persistentVolumeClaim"]["claimName"],
            "replbox-ws-s"
        );
        assert_eq!(v["metadata"]["annotations"][LABEL_SESSION], "s");
    }
}
