//! The objects a region owns — its agent DaemonSet, Service and ConfigMap — built as pure
//! functions of the region, and the comparison that decides whether they need applying.

use std::collections::BTreeMap;

use edgeroute_protocol::crd::{CANARY_TRACK, EDGE_TAINT, EdgeRegion, REGION_LABEL, TRACK_LABEL};
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecurityContext, Service, ServicePort, ServiceSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::Value;

/// Value of `app.kubernetes.io/managed-by` on everything the controller creates.
pub const MANAGED_BY: &str = "edgeroute-controller";
/// Where the agent keeps its sled database, in the container and (per region) on the node.
pub const DATA_DIR: &str = "/var/lib/edgeroute";
/// Non-root uid/gid the agent image runs as (distroless `nonroot`).
const AGENT_UID: i64 = 65532;

/// Settings of the control plane that end up in the agents' environment.
#[derive(Debug, Clone)]
pub struct AgentEnv {
    /// URL agents sync with.
    pub control_plane_url: String,
}

/// Name shared by a region's DaemonSet, Service and ConfigMap.
pub fn child_name(region: &EdgeRegion) -> String {
    format!("edgeroute-agent-{}", region.name_any())
}

/// Name of the region's canary DaemonSet, which exists only during an agent rollout.
pub fn canary_name(region: &EdgeRegion) -> String {
    format!("edgeroute-agent-{}-canary", region.name_any())
}

/// Which of a region's two agent DaemonSets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// Every region node without the canary label (all of them outside a rollout).
    Stable,
    /// The nodes labelled `edgeroute.io/track=canary`.
    Canary,
}

fn selector_labels(region: &EdgeRegion) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "edgeroute-agent".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), region.name_any()),
    ])
}

/// Label on a DaemonSet (and its pods) naming the agent version it runs.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

fn labels(region: &EdgeRegion, version: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(region);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert(VERSION_LABEL.into(), version.to_owned());
    labels.insert(REGION_LABEL.into(), region.name_any());
    labels
}

fn metadata(region: &EdgeRegion, owner: &OwnerReference) -> ObjectMeta {
    metadata_named(
        region,
        owner,
        child_name(region),
        &region.spec.agent.version,
    )
}

fn metadata_named(
    region: &EdgeRegion,
    owner: &OwnerReference,
    name: String,
    version: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: region.namespace(),
        labels: Some(labels(region, version)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The owner reference (controller=true) children carry; `None` until the region has a uid.
pub fn owner_ref(region: &EdgeRegion) -> Option<OwnerReference> {
    region.controller_owner_ref(&())
}

/// The ConfigMap the agents read their region settings from.
pub fn config_map(region: &EdgeRegion, owner: &OwnerReference) -> ConfigMap {
    let spec = &region.spec;
    let data = BTreeMap::from([
        ("EDGEROUTE_REGION".to_owned(), region.name_any()),
        (
            "EDGEROUTE_GRAPH_SOURCE".to_owned(),
            spec.graph.source.clone(),
        ),
        (
            "EDGEROUTE_GRAPH_VERSION".to_owned(),
            spec.graph.version.clone(),
        ),
        (
            "EDGEROUTE_LISTEN".to_owned(),
            format!("0.0.0.0:{}", spec.agent.port),
        ),
        (
            "EDGEROUTE_PROBE_LISTEN".to_owned(),
            format!("0.0.0.0:{}", probe_port(spec.agent.port)),
        ),
    ]);
    ConfigMap {
        metadata: metadata(region, owner),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// FNV-1a over the ConfigMap data: a pod-template annotation, so a config change rolls the
/// agents (env from a ConfigMap is read only at container start).
fn config_hash(cm: &ConfigMap) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in cm.data.iter().flatten() {
        for byte in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The Service in front of the region's agents.
pub fn service(region: &EdgeRegion, owner: &OwnerReference) -> Service {
    Service {
        metadata: metadata(region, owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(region)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: region.spec.agent.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn tolerations(region: &EdgeRegion) -> Vec<Toleration> {
    let mut all = vec![Toleration {
        key: Some(EDGE_TAINT.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    }];
    all.extend(
        region
            .spec
            .agent
            .tolerations
            .iter()
            .filter(|t| !all.contains(t))
            .cloned()
            .collect::<Vec<_>>(),
    );
    all
}

/// The Secret (in the controller's namespace) holding the agents' `api-keys` (comma
/// separated), `admin-key` and `sync-token` (one of the center's `--agent-token`s).
pub const AGENT_SECRET: &str = "edgeroute-agent-keys";

fn env(region: &EdgeRegion, agent_env: &AgentEnv) -> Vec<EnvVar> {
    let plain = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    };
    let secret = |name: &str, key: &str| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: AGENT_SECRET.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    };
    vec![
        EnvVar {
            name: "NODE_NAME".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: "spec.nodeName".into(),
                }),
                ..EnvVarSource::default()
            }),
        },
        // The agent's own flag is EDGEROUTE_NODE_NAME; Kubernetes expands $(NODE_NAME) from
        // the variable above.
        plain("EDGEROUTE_NODE_NAME", "$(NODE_NAME)".into()),
        // Agents refuse to start without API keys (or an explicit --no-auth): the keys come
        // from a Secret the operator creates, so none is ever written into a manifest.
        secret("EDGEROUTE_API_KEY", "api-keys"),
        secret("EDGEROUTE_ADMIN_KEY", "admin-key"),
        // How the agent proves itself to the center; with mutual TLS instead, the client
        // certificate replaces it.
        secret("EDGEROUTE_SYNC_TOKEN", "sync-token"),
        plain("EDGEROUTE_REGION", region.name_any()),
        plain(
            "EDGEROUTE_CONTROL_PLANE_URL",
            agent_env.control_plane_url.clone(),
        ),
        plain("EDGEROUTE_DATA_DIR", DATA_DIR.into()),
    ]
}

/// The port of the agent's probe listener (`--probe-listen`: health, readiness and metrics
/// only, without the API's shedding or connection cap), so the kubelet's probes never queue
/// behind a flood of clients and a busy agent is not restarted for being busy. It is the
/// API port plus one (minus one at the top of the range); the Service does not expose it.
pub fn probe_port(api_port: i32) -> i32 {
    if api_port < 65_535 {
        api_port + 1
    } else {
        api_port - 1
    }
}

fn probe(path: &str, initial_delay: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("probes".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// The region's stable agent DaemonSet running the spec's version (what a region runs
/// outside a rollout).
pub fn daemon_set(
    region: &EdgeRegion,
    owner: &OwnerReference,
    cm: &ConfigMap,
    agent_env: &AgentEnv,
) -> DaemonSet {
    let version = region.spec.agent.version.clone();
    agent_daemon_set(region, owner, cm, agent_env, &version, Track::Stable)
}

/// The stable DaemonSet keeps its historical name and selector (both immutable, so
/// upgrading the controller does not recreate it) and always stays off canary nodes,
/// even outside a rollout: adding that affinity only when a rollout starts would change
/// its pod template and restart every stable agent.
///
/// The canary DaemonSet runs on the region's nodes labelled `edgeroute.io/track=canary`;
/// its pods carry the Service's selector labels too, so canaries serve traffic.
pub fn agent_daemon_set(
    region: &EdgeRegion,
    owner: &OwnerReference,
    cm: &ConfigMap,
    agent_env: &AgentEnv,
    version: &str,
    track: Track,
) -> DaemonSet {
    let agent = &region.spec.agent;
    let mut pod_labels = labels(region, version);
    let mut selector = selector_labels(region);
    let mut node_selector = BTreeMap::from([(REGION_LABEL.to_owned(), region.name_any())]);
    let (name, affinity) = match track {
        Track::Stable => (
            child_name(region),
            Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: TRACK_LABEL.into(),
                                operator: "NotIn".into(),
                                values: Some(vec![CANARY_TRACK.into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
        ),
        Track::Canary => {
            for map in [&mut pod_labels, &mut selector, &mut node_selector] {
                map.insert(TRACK_LABEL.into(), CANARY_TRACK.into());
            }
            (canary_name(region), None)
        }
    };
    let template_meta = ObjectMeta {
        labels: Some(pod_labels),
        annotations: Some(BTreeMap::from([(
            "edgeroute.io/config-hash".to_owned(),
            config_hash(cm),
        )])),
        ..ObjectMeta::default()
    };
    let container = Container {
        name: "agent".into(),
        image: Some(format!("{}:{version}", agent.image)),
        image_pull_policy: Some(agent.image_pull_policy.as_str().into()),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: agent.port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("probes".into()),
                container_port: probe_port(agent.port),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env: Some(env(region, agent_env)),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: child_name(region),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: agent.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let pod = PodSpec {
        node_selector: Some(node_selector),
        affinity,
        tolerations: Some(tolerations(region)),
        // Agents talk to the control plane only; they need no Kubernetes API token.
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            fs_group: Some(AGENT_UID),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: Some(vec![
            // The sled database (graph and outbox) must survive pod restarts on the node.
            Volume {
                name: "data".into(),
                host_path: Some(HostPathVolumeSource {
                    path: format!("{DATA_DIR}/{}", region.name_any()),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Volume::default()
            },
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        termination_grace_period_seconds: Some(30),
        ..PodSpec::default()
    };
    let mut metadata = metadata_named(region, owner, name, version);
    if track == Track::Canary {
        metadata
            .labels
            .get_or_insert_default()
            .insert(TRACK_LABEL.into(), CANARY_TRACK.into());
    }
    DaemonSet {
        metadata,
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(pod),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            ..DaemonSetSpec::default()
        },
        status: None,
    }
}

/// Whether every field of `desired` is present with the same value in `observed`. The API
/// server adds defaults and metadata to what was applied, so equality would never hold;
/// containment is what "applying again changes nothing" means.
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Object(d), Value::Object(o)) => d
            .iter()
            .all(|(k, v)| o.get(k).is_some_and(|ov| is_subset(v, ov))),
        (Value::Array(d), Value::Array(o)) => {
            d.len() == o.len() && d.iter().zip(o).all(|(dv, ov)| is_subset(dv, ov))
        }
        _ => desired == observed,
    }
}

#[cfg(test)]
mod tests;
