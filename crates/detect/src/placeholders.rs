//! Sigma placeholders: a value `%name%` under the `expand` modifier stands for a list of values
//! configured outside the rule (Sigma specification, "Placeholders"). The built-in pack uses
//! them for what each site tunes — identities that are allowed, namespaces that are exempt,
//! registries that are trusted — so a site changes configuration, not rules:
//!
//! | placeholder | default | configured by |
//! |---|---|---|
//! | `%system_identities%` | the control plane's own identities on kubeadm, GKE, EKS and AKS (below) | `[detection.placeholders]` |
//! | `%system_namespaces%` | kube-system, kube-public, kube-node-lease, gke-system, gke-managed-* | `[detection.placeholders]` |
//! | `%allowed_users%` | none | `[detection] allow_users` |
//! | `%allowed_namespaces%` | none | `[detection] allow_namespaces` |
//! | `%privileged_images%` | node agents that need host access: CNI, kube-proxy, CSI, the clouds' node daemons (Falco's `falco_privileged_images` idea) | `[detection.placeholders]` |
//! | `%secret_operators%` | controllers whose job is reading every secret (cert-manager, ingress-nginx, kube-state-metrics, the Prometheus operator, Argo CD, Flux, External Secrets, Sealed Secrets) | `[detection.placeholders]` |
//! | `%kube_system_images%` | the providers' registries for their add-ons (what may run in kube-system) | `[detection.placeholders]` |
//! | `%private_networks%` | RFC 1918, loopback, CGNAT, link-local, IPv6 unique-local | `[detection.placeholders]` |
//! | `%trusted_registries%` | the public registries of Kubernetes and the three clouds | `[detection] trusted_registries` |
//!
//! Values are Sigma values: `*` and `?` are wildcards. A rule that names a placeholder nobody
//! defined loads disabled and says which.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// Placeholder name → values.
pub type Placeholders = BTreeMap<String, Vec<String>>;

/// Identities of the control plane and of the providers' managed components: what every peer's
/// Kubernetes rules exclude (Falco's `k8s_*_users` lists, Panther's system principals, Elastic's
/// `system:` filters, the AKS/GKE/EKS service identities).
pub const SYSTEM_IDENTITIES: &[&str] = &[
    // Kubernetes itself
    "system:serviceaccount:kube-system:*",
    "system:node:*",
    "system:kube-*",
    "system:apiserver",
    "system:volume-scheduler",
    "system:certificates.k8s.io:*",
    // GKE
    "system:gke-*",
    "system:addon-manager",
    "system:cloud-controller-manager",
    "system:gcp-controller-manager",
    "system:clustermetrics",
    "system:l7-lb-controller",
    "system:managed-certificate-controller",
    "system:konnectivity-server",
    "system:serviceaccount:gke-managed-*",
    "gke-*",
    "system:serviceaccount:gmp-system:*",
    "*@container-engine-robot.iam.gserviceaccount.com",
    "*@gcp-sa-gkenode.iam.gserviceaccount.com",
    // EKS
    "eks:*",
    "system:serviceaccount:amazon-*:*",
    // AKS
    "aksService",
    "masterclient",
    "nodeclient",
    "azure-*",
    "system:serviceaccount:calico-system:*",
    "system:serviceaccount:gatekeeper-system:*",
];

/// Namespaces the platform runs its own components in (Panther's `SYSTEM_NAMESPACES`, with
/// GKE's managed ones): a control-plane identity creating a privileged pod there is the
/// platform at work; the same identity doing it elsewhere is a workload someone wrote.
pub const SYSTEM_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "gke-system",
    "gke-managed-*",
];

/// Images the platform itself runs in `kube-system` / `kube-public` (the providers' registries
/// for their add-ons).
pub const KUBE_SYSTEM_IMAGES: &[&str] = &[
    "registry.k8s.io/*",
    "k8s.gcr.io/*",
    "mcr.microsoft.com/*",
    "gcr.io/gke-release/*",
    "gke.gcr.io/*",
    "public.ecr.aws/eks*",
    "*.dkr.ecr.*.amazonaws.com/eks/*",
];

/// Address ranges that are not the internet (RFC 1918, loopback, CGNAT, link-local, IPv6
/// unique-local): the "from a public address" rules skip them. A cluster whose pods or nodes
/// use other non-public ranges adds them.
pub const PRIVATE_NETWORKS: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// Registries whose images the pack trusts by default.
pub const TRUSTED_REGISTRIES: &[&str] = &[
    "registry.k8s.io/*",
    "k8s.gcr.io/*",
    "mcr.microsoft.com/*",
    "gcr.io/*",
    "*.gcr.io/*",
    "public.ecr.aws/*",
    "quay.io/*",
    "ghcr.io/*",
    "docker.io/library/*",
    "*.azurecr.io/*",
    "*-docker.pkg.dev/*",
    "*.dkr.ecr.*.amazonaws.com/*",
];

/// Images of node agents that legitimately run privileged, on the host network or with host
/// mounts (the pod rules skip pods that run one of them).
pub const PRIVILEGED_IMAGES: &[&str] = &[
    "*/kube-proxy:*",
    "*/kube-proxy",
    "*calico/node:*",
    "*calico/cni:*",
    "*cilium/cilium:*",
    "*/cilium/cilium:*",
    "*/amazon-k8s-cni:*",
    "*/amazon-k8s-cni-init:*",
    "*/aws-ebs-csi-driver:*",
    "*/eks/kube-proxy:*",
    "gke.gcr.io/*",
    "*/gke-release/*",
    "mcr.microsoft.com/oss/kubernetes/*",
    "mcr.microsoft.com/containernetworking/*",
    "mcr.microsoft.com/oss/kubernetes-csi/*",
    "mcr.microsoft.com/azuremonitor/containerinsights/*",
    "registry.k8s.io/kube-proxy:*",
    "registry.k8s.io/dns/k8s-dns-node-cache:*",
    "registry.k8s.io/sig-storage/*",
    "*falcosecurity/falco*",
];

/// Service accounts of controllers that read or watch secrets across namespaces by design
/// (matched by their usual namespace, or by the name Helm charts give them).
pub const SECRET_OPERATORS: &[&str] = &[
    "system:serviceaccount:cert-manager:*",
    "system:serviceaccount:*:*cert-manager",
    "system:serviceaccount:*:*cert-manager-cainjector",
    "system:serviceaccount:ingress-nginx:*",
    "system:serviceaccount:*:*ingress-nginx",
    "system:serviceaccount:*:*kube-state-metrics",
    "system:serviceaccount:*:*prometheus*operator",
    "system:serviceaccount:argocd:argocd-*",
    "system:serviceaccount:flux-system:*",
    "system:serviceaccount:external-secrets:*",
    "system:serviceaccount:*:sealed-secrets-controller",
];

/// The built-in values.
pub fn defaults() -> Placeholders {
    let mut p = Placeholders::new();
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    p.insert("system_identities".into(), own(SYSTEM_IDENTITIES));
    p.insert("allowed_users".into(), Vec::new());
    p.insert("allowed_namespaces".into(), Vec::new());
    p.insert("trusted_registries".into(), own(TRUSTED_REGISTRIES));
    p.insert("privileged_images".into(), own(PRIVILEGED_IMAGES));
    p.insert("secret_operators".into(), own(SECRET_OPERATORS));
    p.insert("system_namespaces".into(), own(SYSTEM_NAMESPACES));
    p.insert("kube_system_images".into(), own(KUBE_SYSTEM_IMAGES));
    p.insert("private_networks".into(), own(PRIVATE_NETWORKS));
    p
}

thread_local! {
    static ACTIVE: RefCell<Option<Placeholders>> = const { RefCell::new(None) };
}

/// Run `f` (which loads rules) with `values` as the placeholders' values; outside, the
/// defaults apply.
pub fn with<R>(values: &Placeholders, f: impl FnOnce() -> R) -> R {
    let before = ACTIVE.with(|a| a.replace(Some(values.clone())));
    let out = f();
    ACTIVE.with(|a| *a.borrow_mut() = before);
    out
}

/// The values a value with placeholders stands for: each `%name%` replaced by each of its
/// values (one placeholder per value; text around it is kept, `'prefix-%x%'`).
pub(crate) fn expand(value: &str) -> Result<Vec<String>, String> {
    let Some(start) = value.find('%') else {
        return Ok(vec![value.to_string()]);
    };
    let end = value[start + 1..]
        .find('%')
        .map(|e| start + 1 + e)
        .ok_or_else(|| format!("`expand`: {value:?} has an unterminated %placeholder%"))?;
    let name = &value[start + 1..end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!("`expand`: {name:?} is not a placeholder name"));
    }
    if value[end + 1..].contains('%') {
        return Err(format!(
            "`expand`: {value:?} has more than one placeholder (one per value)"
        ));
    }
    let values = ACTIVE.with(|a| match a.borrow().as_ref() {
        Some(p) => p.get(name).cloned(),
        None => defaults().get(name).cloned(),
    });
    let values = values.ok_or_else(|| {
        format!("placeholder %{name}% has no values configured ([detection.placeholders])")
    })?;
    let (pre, post) = (&value[..start], &value[end + 1..]);
    Ok(values.iter().map(|v| format!("{pre}{v}{post}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_to_their_values() {
        let mut p = Placeholders::new();
        p.insert("team".into(), vec!["a".into(), "b".into()]);
        with(&p, || {
            assert_eq!(expand("%team%").unwrap(), vec!["a", "b"]);
            assert_eq!(expand("x-%team%-y").unwrap(), vec!["x-a-y", "x-b-y"]);
            assert_eq!(expand("plain").unwrap(), vec!["plain"]);
            assert!(expand("%nope%")
                .unwrap_err()
                .contains("%nope% has no values"));
            assert!(expand("%team").unwrap_err().contains("unterminated"));
            assert!(expand("%a%%b%").is_err());
        });
        // outside `with`, the defaults
        assert!(expand("%system_identities%")
            .unwrap()
            .contains(&"eks:*".to_string()));
        assert!(expand("%team%").is_err());
    }
}
