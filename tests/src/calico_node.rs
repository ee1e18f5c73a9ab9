//! The netfilter ruleset of a Calico node (Felix, iptables dataplane) with kube-proxy (iptables
//! mode) beside it: what a pod's packet meets in a real node's kernel, and what fastpath's default
//! mode (`--trust kernel`) leaves to that kernel. The benchmark's `calico-node` path and the
//! tests that need a real node's rules install it in node namespaces.
//!
//! Modelled on, not copied from:
//! - Felix, `felix/rules/static.go` (projectcalico/calico): the static chains `cali-PREROUTING`
//!   (raw and mangle), `cali-FORWARD`, `cali-POSTROUTING` (mangle and nat), `cali-nat-outgoing`,
//!   the rules Felix appends to `FORWARD`, its mark bits;
//! - `felix/rules/endpoints.go`: a workload's `cali-fw-…` / `cali-tw-…` chains (conntrack
//!   rules first, then the profiles) and the profile chains `cali-pro-…` / `cali-pri-…`;
//! - `felix/rules/dispatch.go`: `cali-from-wl-dispatch` / `cali-to-wl-dispatch`, one rule per
//!   local workload interface, unknown interfaces dropped;
//! - kube-proxy, `pkg/proxy/iptables/proxier.go` (kubernetes/kubernetes): its jumps from the
//!   built-in chains, `KUBE-SERVICES` with one rule per service port and `KUBE-NODEPORTS` last,
//!   `KUBE-SVC-…` / `KUBE-SEP-…` per service and endpoint, `KUBE-MARK-MASQ`,
//!   `KUBE-POSTROUTING`, `KUBE-FORWARD`, `KUBE-PROXY-FIREWALL`, `KUBE-EXTERNAL-SERVICES`.
//!
//! The shape, per node (N services, P local pods; rule counts in [`Ruleset::rules_in`]):
//! - raw `PREROUTING` → `cali-PREROUTING`: clear Calico's mark bits, mark packets from `cali+`,
//!   `-m rpfilter --validmark --invert -j DROP` on them (the anti-spoofing check);
//! - mangle `PREROUTING` → `cali-PREROUTING`: `ctstate RELATED,ESTABLISHED -j ACCEPT` first;
//!   mangle `POSTROUTING` → `cali-POSTROUTING`;
//! - nat `PREROUTING`/`OUTPUT` → `cali-…` then `KUBE-SERVICES`: N rules, one per service port,
//!   each to a `KUBE-SVC-…` (masquerade mark for sources outside the pool, then its one
//!   endpoint) and a `KUBE-SEP-…` (hairpin mark, DNAT), then `KUBE-NODEPORTS`; nat
//!   `POSTROUTING` → `cali-POSTROUTING` (`cali-nat-outgoing`), `KUBE-POSTROUTING`;
//! - filter `FORWARD`: `cali-FORWARD` (dispatch on `cali+` to `cali-fw-caliX` / `cali-tw-caliX`,
//!   each starting with `ctstate RELATED,ESTABLISHED -j ACCEPT` and `ctstate INVALID -j DROP`,
//!   then the namespace's profile chains setting the 0x10000 accept mark), then
//!   `KUBE-PROXY-FIREWALL`, `KUBE-FORWARD`, `KUBE-SERVICES` and `KUBE-EXTERNAL-SERVICES` (those
//!   behind `ctstate NEW`), then Felix's appended `-m mark --mark 0x10000/0x10000 -j ACCEPT`.
//!   The dispatch uses `-g`, so an established packet from a pod is accepted by its own
//!   `cali-fw-…` and never reaches the receiver's `cali-tw-…` (which judges only what arrives
//!   from another node, or a new connection between local pods).
//!   The policy is DROP: every pod packet must be accepted by the rules above, as Felix's
//!   appended rule does on a real node, so a mistake in the model shows as lost traffic
//!   instead of hiding behind the policy.
//!
//! Where it differs from a real node, and why:
//! - ipset matches are written as CIDR matches (`cali-nat-outgoing` masquerades
//!   `-s POOL ! -d POOL`, exactly what its two pool sets say with one pool): this machine has
//!   no `ipset` tool. Felix's mangle rule toward `cali-egress-dscp` (an ipset of endpoints with
//!   a DSCP annotation, empty without one) is left out for the same reason.
//! - Felix's `cali:<hash>` rule comments are left out: iptables-nft keeps comments as rule
//!   metadata, which no packet evaluates.
//! - Only what a forwarded packet meets: no filter `INPUT`/`OUTPUT` chains (`cali-INPUT`,
//!   `KUBE-FIREWALL`, ...), no host endpoints, no network policy beyond the namespace profile
//!   (Kubernetes' default: everything allowed), every service with one ready endpoint (so the
//!   filter `KUBE-SERVICES` holds no REJECT), no node ports, no IPIP or VXLAN rules (the
//!   benchmark's kernel path routes without encapsulation). Felix splits a dispatch chain by
//!   interface-name prefix beyond one interface per prefix; with a handful of pods it is flat.
//! - kube-proxy names `KUBE-SVC-…`/`KUBE-SEP-…` with SHA-256 in base32; here FNV-1a in base32,
//!   as long and as unique.
//!
//! IPv6: on a dual-stack node Felix renders its IPv6 chains from the same code as its IPv4 ones
//! (`ipVersion` 6: the same chain names and marks, the IPv6 pool in `cali-nat-outgoing`), and
//! kube-proxy runs one proxier per family, the same chains with the service's IPv6 cluster IP
//! and endpoints. So does this model: one [`Spec`], rendered for either [`Family`]
//! ([`Spec::in_family`]), loaded with `iptables-restore` or `ip6tables-restore` (both
//! iptables-nft here). What Felix adds for IPv6 alone, ICMPv6's neighbour discovery and router
//! solicitations accepted in `cali-wl-to-host`, is on the INPUT side this model leaves out. The
//! IPv6 addresses are the test bed's dual-stack ones ([`crate::dual_stack`]): the pool
//! `fd5f:a1b2:c3d4::/48`, and an IPv4 service or endpoint `a.b.c.d` maps to its IPv6 twin at
//! the end of the pool's, or the IPv6 service range's, first /96.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

pub use crate::dual_stack::Family;
use crate::{cmd, dual_stack, Node};

/// The pod pool (every block of the seed and the grid is in it): Felix's IPAM pool and
/// kube-proxy's `--cluster-cidr`.
pub const POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 244, 0, 0), 16);
/// The IPv6 pod pool of the test bed's dual-stack clusters: [`POOL`]'s addresses are in its
/// first /96.
pub const POOL6: (Ipv6Addr, u8) = (dual_stack::POOL6, 48);
/// The IPv6 service range's first /96, into which IPv4 cluster IPs map (kube-proxy's
/// `--service-cluster-ip-range` for IPv6 would be a /108 of it: 10.96.0.0/12's twin).
pub const SERVICES6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0);
/// The first cluster IP of generated services (in kubeadm's 10.96.0.0/12; 10.96.0.x is left
/// to services a test names itself).
const FIRST_GENERATED_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 0);
/// Generated services' endpoints: addresses of the pool in 10.244.200.0 – 10.244.255.255, where
/// no test bed pod lives (endpoints whose pods do not exist, as far as the kernel can tell).
const FIRST_GENERATED_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 200, 0);
const GENERATED_BACKENDS: u32 = 56 * 256;
/// The port of generated services and of their endpoints.
const GENERATED_PORT: u16 = 80;
const GENERATED_TARGET_PORT: u16 = 8080;
/// The most services [`generated_services`] makes (the service range holds far more).
pub const MAX_SERVICES: usize = 100_000;

/// Felix's mark bits: its default `IptablesMarkMask` 0xffff0000, allocated from the bottom.
const MARK_ACCEPT: u32 = 0x1_0000;
const MARK_PASS: u32 = 0x2_0000;
const MARK_SCRATCH0: u32 = 0x4_0000;
const MARK_SCRATCH1: u32 = 0x8_0000;
const CALICO_MARKS: u32 = MARK_ACCEPT | MARK_PASS | MARK_SCRATCH0 | MARK_SCRATCH1;
/// kube-proxy's masquerade mark (`--iptables-masquerade-bit` 14).
const KUBE_MASQ_MARK: u32 = 0x4000;
/// kube-proxy leaves comments out of endpoint chains above this many endpoints.
const LARGE_CLUSTER_ENDPOINTS: usize = 1000;
/// The Kubernetes namespace of the test bed's pods: Felix names their profiles after it.
const POD_NAMESPACE: &str = "default";
/// Felix's workload interface prefix.
const WORKLOAD_IFACES: &str = "cali+";

/// One service port with one endpoint, as kube-proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `namespace/name:port`, kube-proxy's name for a service port.
    pub name: String,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub backend: SocketAddr,
}

impl Service {
    /// A service whose cluster IP and endpoint are of one family.
    pub fn new(name: &str, cluster_ip: impl Into<IpAddr>, port: u16, backend: impl Into<SocketAddr>) -> Self {
        let (cluster_ip, backend) = (cluster_ip.into(), backend.into());
        assert_eq!(
            Family::of(cluster_ip),
            Family::of(backend.ip()),
            "{name}: a cluster IP and an endpoint of two families"
        );
        Self { name: name.to_string(), cluster_ip, port, backend }
    }

    pub fn family(&self) -> Family {
        Family::of(self.cluster_ip)
    }

    /// This service as kube-proxy's proxier for `family` sees it: an IPv4 service's IPv6 half
    /// has its cluster IP mapped into [`SERVICES6`] and its endpoint into [`POOL6`] (the same
    /// pod's IPv6 address, in the test bed's dual stack), with the same name and ports.
    pub fn in_family(&self, family: Family) -> Self {
        match (self.cluster_ip, self.backend, family) {
            (_, _, family) if family == self.family() => self.clone(),
            (IpAddr::V4(cluster_ip), SocketAddr::V4(backend), Family::Ipv6) => Self {
                cluster_ip: IpAddr::V6(dual_stack::embed(SERVICES6, cluster_ip)),
                backend: SocketAddr::from((dual_stack::embed(POOL6.0, *backend.ip()), backend.port())),
                ..self.clone()
            },
            _ => panic!("{}: only an IPv4 service has a twin in the other family", self.name),
        }
    }
}

/// `count` TCP services 10.96.1.0:80, 10.96.1.1:80, …, each with one endpoint in
/// 10.244.200.0 – 10.244.255.255 on port 8080 (reused beyond 14 336 services).
pub fn generated_services(count: usize) -> Vec<Service> {
    (0..count)
        .map(|i| {
            let i = u32::try_from(i).expect("fewer than 2^32 services");
            let backend = Ipv4Addr::from(u32::from(FIRST_GENERATED_BACKEND) + i % GENERATED_BACKENDS);
            Service::new(
                &format!("bench/svc-{i}:http"),
                Ipv4Addr::from(u32::from(FIRST_GENERATED_CLUSTER_IP) + i),
                GENERATED_PORT,
                SocketAddrV4::new(backend, GENERATED_TARGET_PORT),
            )
        })
        .collect()
}

/// What one node's ruleset is made of.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The family it is rendered for; every service is of it.
    pub family: Family,
    /// The host ends (`cali…`) of this node's pods.
    pub pod_ifaces: Vec<String>,
    /// In `KUBE-SERVICES` order.
    pub services: Vec<Service>,
}

impl Spec {
    /// `services` generated services and the workload chains of `pod_ifaces`, for IPv4.
    pub fn new(pod_ifaces: &[&str], services: usize) -> Self {
        Self {
            family: Family::Ipv4,
            pod_ifaces: pod_ifaces.iter().map(|s| s.to_string()).collect(),
            services: generated_services(services),
        }
    }

    /// The same node's ruleset for `family`: the same pods, every service in that family
    /// ([`Service::in_family`]), as Felix and kube-proxy render both on a dual-stack node.
    pub fn in_family(self, family: Family) -> Self {
        let services = self.services.iter().map(|s| s.in_family(family)).collect();
        Self { family, services, ..self }
    }

    /// As [`Self::new`] for the pods of `node`.
    pub fn for_node(node: &Node, services: usize) -> Self {
        let ifaces: Vec<&str> = node.pods.iter().map(|p| p.host_iface.as_str()).collect();
        Self::new(&ifaces, services)
    }

    /// `service` added last: a new connection to it has scanned every other service first.
    pub fn with_service(mut self, service: Service) -> Self {
        assert_eq!(service.family(), self.family, "{} in a ruleset of the other family", service.name);
        self.services.push(service);
        self
    }
}

/// One chain: its rules are the arguments after `-A CHAIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// The policy of a built-in chain; `None` for a user chain.
    pub policy: Option<&'static str>,
    pub rules: Vec<String>,
}

impl Chain {
    fn builtin(name: &str, policy: &'static str, rules: Vec<String>) -> Self {
        Self { name: name.to_string(), policy: Some(policy), rules }
    }

    fn user(name: &str, rules: Vec<String>) -> Self {
        Self { name: name.to_string(), policy: None, rules }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub chains: Vec<Chain>,
}

/// The rendered ruleset of one node, for one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub family: Family,
    pub tables: Vec<Table>,
}

impl Ruleset {
    pub fn build(spec: &Spec) -> Self {
        Self {
            family: spec.family,
            tables: vec![raw_table(), mangle_table(), nat_table(spec), filter_table(spec)],
        }
    }

    /// The whole ruleset as `iptables-restore` (or `ip6tables-restore`, for IPv6) reads it; each
    /// table listed is replaced.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            let _ = writeln!(out, "*{}", table.name);
            for chain in &table.chains {
                let _ = writeln!(out, ":{} {} [0:0]", chain.name, chain.policy.unwrap_or("-"));
            }
            for chain in &table.chains {
                for rule in &chain.rules {
                    let _ = writeln!(out, "-A {} {rule}", chain.name);
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn chain(&self, table: &str, name: &str) -> Option<&Chain> {
        self.table(table)?.chains.iter().find(|c| c.name == name)
    }

    /// Rules in `table` (0 for a table it does not have).
    pub fn rules_in(&self, table: &str) -> usize {
        self.table(table).map_or(0, |t| t.chains.iter().map(|c| c.rules.len()).sum())
    }

    pub fn rules(&self) -> usize {
        self.tables.iter().map(|t| self.rules_in(t.name)).sum()
    }

    /// User chains (not counting the built-in ones).
    pub fn user_chains(&self) -> usize {
        self.tables.iter().flat_map(|t| &t.chains).filter(|c| c.policy.is_none()).count()
    }

    /// One line: rules per table and user chains.
    pub fn summary(&self) -> String {
        let tables: Vec<String> =
            self.tables.iter().map(|t| format!("{} {}", t.name, self.rules_in(t.name))).collect();
        format!("{} rules ({}) in {} chains", self.rules(), tables.join(", "), self.user_chains())
    }
}

fn mark(value: u32, mask: u32) -> String {
    format!("-m mark --mark {value:#x}/{mask:#x}")
}

fn set_mark(value: u32, mask: u32) -> String {
    format!("-j MARK --set-xmark {value:#x}/{mask:#x}")
}

fn cidr(addr: impl Into<IpAddr>, len: u8) -> String {
    format!("{}/{len}", addr.into())
}

/// The pod pool of `family`, as a CIDR.
fn pool(family: Family) -> String {
    match family {
        Family::Ipv4 => cidr(POOL.0, POOL.1),
        Family::Ipv6 => cidr(POOL6.0, POOL6.1),
    }
}

const ESTABLISHED: &str = "-m conntrack --ctstate RELATED,ESTABLISHED";

/// raw: the anti-spoofing check on every packet from a workload (static.go,
/// `StaticRawPreroutingChain` and `RPFilter`).
fn raw_table() -> Table {
    let from_workload = MARK_SCRATCH0;
    Table {
        name: "raw",
        chains: vec![
            Chain::builtin("PREROUTING", "ACCEPT", vec!["-j cali-PREROUTING".into()]),
            Chain::builtin("OUTPUT", "ACCEPT", vec![]),
            Chain::user(
                "cali-PREROUTING",
                vec![
                    set_mark(0, CALICO_MARKS),
                    format!("-i {WORKLOAD_IFACES} {}", set_mark(from_workload, from_workload)),
                    format!("{} -j cali-rpf-skip", mark(from_workload, from_workload)),
                    format!(
                        "{} -m rpfilter --validmark --invert -j DROP",
                        mark(from_workload, from_workload)
                    ),
                    format!("{} -j cali-from-host-endpoint", mark(0, from_workload)),
                    format!("{} -j ACCEPT", mark(MARK_ACCEPT, MARK_ACCEPT)),
                ],
            ),
            Chain::user("cali-rpf-skip", vec![]),
            Chain::user("cali-from-host-endpoint", vec![]),
        ],
    }
}

/// mangle: established connections accepted first (`StaticManglePreroutingChain`), host
/// endpoint policy on DNATed host traffic (`StaticManglePostroutingChain`).
fn mangle_table() -> Table {
    let accepted = mark(MARK_ACCEPT, MARK_ACCEPT);
    Table {
        name: "mangle",
        chains: vec![
            Chain::builtin("PREROUTING", "ACCEPT", vec!["-j cali-PREROUTING".into()]),
            Chain::builtin("INPUT", "ACCEPT", vec![]),
            Chain::builtin("FORWARD", "ACCEPT", vec![]),
            Chain::builtin("OUTPUT", "ACCEPT", vec![]),
            Chain::builtin("POSTROUTING", "ACCEPT", vec!["-j cali-POSTROUTING".into()]),
            Chain::user(
                "cali-PREROUTING",
                vec![
                    format!("{ESTABLISHED} -j ACCEPT"),
                    format!("{accepted} -j ACCEPT"),
                    "-j cali-from-host-endpoint".into(),
                    format!(
                        "-m comment --comment \"Host endpoint policy accepted packet.\" {accepted} -j ACCEPT"
                    ),
                ],
            ),
            Chain::user(
                "cali-POSTROUTING",
                vec![
                    format!("{accepted} -j RETURN"),
                    set_mark(0, CALICO_MARKS),
                    "-m conntrack --ctstate DNAT -j cali-to-host-endpoint".into(),
                    format!(
                        "-m comment --comment \"Host endpoint policy accepted packet.\" {accepted} -j RETURN"
                    ),
                ],
            ),
            Chain::user("cali-from-host-endpoint", vec![]),
            Chain::user("cali-to-host-endpoint", vec![]),
        ],
    }
}

/// nat: Felix's NAT chains (`StaticNATTableChains`) and kube-proxy's services.
fn nat_table(spec: &Spec) -> Table {
    let portals = "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_string();
    let mut chains = vec![
        Chain::builtin("PREROUTING", "ACCEPT", vec!["-j cali-PREROUTING".into(), portals.clone()]),
        Chain::builtin("INPUT", "ACCEPT", vec![]),
        Chain::builtin("OUTPUT", "ACCEPT", vec!["-j cali-OUTPUT".into(), portals]),
        Chain::builtin(
            "POSTROUTING",
            "ACCEPT",
            vec![
                "-j cali-POSTROUTING".into(),
                "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING".into(),
            ],
        ),
        Chain::user("cali-PREROUTING", vec!["-j cali-fip-dnat".into()]),
        Chain::user("cali-OUTPUT", vec!["-j cali-fip-dnat".into()]),
        Chain::user("cali-POSTROUTING", vec!["-j cali-fip-snat".into(), "-j cali-nat-outgoing".into()]),
        Chain::user("cali-fip-dnat", vec![]),
        Chain::user("cali-fip-snat", vec![]),
        Chain::user(
            "cali-nat-outgoing",
            vec![format!("-s {0} ! -d {0} -j MASQUERADE --random-fully", pool(spec.family))],
        ),
        Chain::user(
            "KUBE-POSTROUTING",
            vec![
                format!("-m mark ! --mark {KUBE_MASQ_MARK:#x}/{KUBE_MASQ_MARK:#x} -j RETURN"),
                format!("-j MARK --xor-mark {KUBE_MASQ_MARK:#x}"),
                "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
                    .into(),
            ],
        ),
        Chain::user("KUBE-MARK-MASQ", vec![format!("-j MARK --or-mark {KUBE_MASQ_MARK:#x}")]),
        Chain::user("KUBE-NODEPORTS", vec![]),
    ];
    let large_cluster = spec.services.len() > LARGE_CLUSTER_ENDPOINTS;
    let host = spec.family.host_prefix_len();
    let mut portal_rules = Vec::with_capacity(spec.services.len() + 1);
    for service in &spec.services {
        let svc_chain = format!("KUBE-SVC-{}", name_hash(&format!("{}tcp", service.name)));
        let sep_chain = format!("KUBE-SEP-{}", name_hash(&format!("{}tcp{}", service.name, service.backend)));
        let cluster_ip = format!(
            "-m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {} --dport {}",
            service.name,
            cidr(service.cluster_ip, host),
            service.port
        );
        portal_rules.push(format!("{cluster_ip} -j {svc_chain}"));
        chains.push(Chain::user(
            &svc_chain,
            vec![
                format!("{cluster_ip} ! -s {} -j KUBE-MARK-MASQ", pool(spec.family)),
                format!("-m comment --comment \"{} -> {}\" -j {sep_chain}", service.name, service.backend),
            ],
        ));
        let comment =
            if large_cluster { String::new() } else { format!("-m comment --comment \"{}\" ", service.name) };
        chains.push(Chain::user(
            &sep_chain,
            vec![
                format!("{comment}-s {} -j KUBE-MARK-MASQ", cidr(service.backend.ip(), host)),
                format!("{comment}-m tcp -p tcp -j DNAT --to-destination {}", service.backend),
            ],
        ));
    }
    portal_rules.push(
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" \
         -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
            .into(),
    );
    chains.push(Chain::user("KUBE-SERVICES", portal_rules));
    Table { name: "nat", chains }
}

/// filter: Felix's forward chains (`StaticFilterForwardChains`, the dispatch and workload
/// chains, `StaticFilterForwardAppendRules`) with kube-proxy's jumps between them.
fn filter_table(spec: &Spec) -> Table {
    let new = "-m conntrack --ctstate NEW";
    let mut chains = vec![
        Chain::builtin("INPUT", "ACCEPT", vec![]),
        Chain::builtin(
            "FORWARD",
            "DROP",
            vec![
                "-j cali-FORWARD".into(),
                format!(
                    "{new} -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"
                ),
                "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD".into(),
                format!("{new} -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
                format!(
                    "{new} -m comment --comment \"kubernetes externally-visible service portals\" \
                     -j KUBE-EXTERNAL-SERVICES"
                ),
                format!(
                    "-m comment --comment \"Policy explicitly accepted packet.\" {} -j ACCEPT",
                    mark(MARK_ACCEPT, MARK_ACCEPT)
                ),
                set_mark(MARK_ACCEPT, MARK_ACCEPT),
            ],
        ),
        Chain::builtin("OUTPUT", "ACCEPT", vec![]),
        Chain::user(
            "cali-FORWARD",
            vec![
                set_mark(0, CALICO_MARKS & !MARK_ACCEPT),
                format!("{} -j cali-from-hep-forward", mark(0, MARK_ACCEPT)),
                format!("-i {WORKLOAD_IFACES} -j cali-from-wl-dispatch"),
                format!("-o {WORKLOAD_IFACES} -j cali-to-wl-dispatch"),
                "-j cali-to-hep-forward".into(),
                "-j cali-cidr-block".into(),
            ],
        ),
        Chain::user("cali-from-hep-forward", vec![]),
        Chain::user("cali-to-hep-forward", vec![]),
        Chain::user("cali-cidr-block", vec![]),
        dispatch_chain("cali-from-wl-dispatch", "-i", "cali-fw-", &spec.pod_ifaces),
        dispatch_chain("cali-to-wl-dispatch", "-o", "cali-tw-", &spec.pod_ifaces),
    ];
    for iface in &spec.pod_ifaces {
        chains.push(workload_chain(&format!("cali-fw-{iface}"), "cali-pro-", true));
        chains.push(workload_chain(&format!("cali-tw-{iface}"), "cali-pri-", false));
    }
    for prefix in ["cali-pro-", "cali-pri-"] {
        let [namespace, service_account] = profiles();
        // The namespace's profile allows everything (what Calico's controllers create for a
        // Kubernetes namespace); the service account's only carries labels.
        chains.push(Chain::user(
            &format!("{prefix}{namespace}"),
            vec![set_mark(MARK_ACCEPT, MARK_ACCEPT), format!("{} -j RETURN", mark(MARK_ACCEPT, MARK_ACCEPT))],
        ));
        chains.push(Chain::user(&format!("{prefix}{service_account}"), vec![]));
    }
    for empty in ["KUBE-PROXY-FIREWALL", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS"] {
        chains.push(Chain::user(empty, vec![]));
    }
    chains.push(Chain::user(
        "KUBE-FORWARD",
        vec![
            // kube-proxy leaves this out when nf_conntrack_tcp_be_liberal is set when it starts;
            // fastpath does not set it (it makes the entries it carries liberal, one by one).
            "-m conntrack --ctstate INVALID -j DROP".into(),
            format!(
                "-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {KUBE_MASQ_MARK:#x}/{KUBE_MASQ_MARK:#x} \
                 -j ACCEPT"
            ),
            format!("-m comment --comment \"kubernetes forwarding conntrack rule\" {ESTABLISHED} -j ACCEPT"),
        ],
    ));
    Table { name: "filter", chains }
}

/// The profiles of every pod here: its namespace's and its service account's (`default`).
fn profiles() -> [String; 2] {
    [format!("kns.{POD_NAMESPACE}"), format!("ksa.{POD_NAMESPACE}.default")]
}

/// One rule per workload interface (`-i`/`-o` IFACE `-g` its chain), unknown interfaces dropped.
fn dispatch_chain(name: &str, direction: &str, prefix: &str, ifaces: &[String]) -> Chain {
    let mut rules: Vec<String> =
        ifaces.iter().map(|iface| format!("{direction} {iface} -g {prefix}{iface}")).collect();
    rules.push("-m comment --comment \"Unknown interface\" -j DROP".into());
    Chain::user(name, rules)
}

/// A workload's chain in one direction (`endpointIptablesChain` with no policy, only profiles).
/// Traffic from a workload may not carry VXLAN or IPIP of its own.
fn workload_chain(name: &str, profile_prefix: &str, from_workload: bool) -> Chain {
    let mut rules = vec![
        format!("{ESTABLISHED} -j ACCEPT"),
        "-m conntrack --ctstate INVALID -j DROP".into(),
        set_mark(0, MARK_ACCEPT | MARK_PASS),
    ];
    if from_workload {
        rules.push(
            "-m comment --comment \"DROP VXLAN encapped packets originating in workloads\" -p udp -m udp --dport 4789 \
             -j DROP"
                .into(),
        );
        rules.push(
            "-m comment --comment \"DROP IPinIP encapped packets originating in workloads\" -p 4 -j DROP"
                .into(),
        );
    }
    for profile in profiles() {
        rules.push(format!("-j {profile_prefix}{profile}"));
        rules.push(format!(
            "-m comment --comment \"Return if profile accepted\" {} -j RETURN",
            mark(MARK_ACCEPT, MARK_ACCEPT)
        ));
    }
    rules.push("-m comment --comment \"Drop if no profiles matched\" -j DROP".into());
    Chain::user(name, rules)
}

/// 16 characters of base32 naming a service or endpoint chain (kube-proxy takes them from a
/// SHA-256; two differently seeded FNV-1a hashes give 80 bits just as unique for names).
fn name_hash(text: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let fnv = |seed: u64| text.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let bits = (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x8422_2325_cbf2_9ce4));
    (0..16).map(|i| char::from(ALPHABET[((bits >> (5 * i)) & 31) as usize])).collect()
}

/// A ruleset loaded into a node namespace.
#[derive(Clone, Debug)]
pub struct Installed {
    pub ruleset: Ruleset,
    /// How long `iptables-restore` (or `ip6tables-restore`) took.
    pub took: Duration,
}

/// Install the IPv4 ruleset of `services` generated services and the workload chains of
/// `pod_ifaces` in node namespace `ns`, replacing its raw, mangle, nat and filter tables.
pub fn install(ns: &str, pod_ifaces: &[&str], services: usize) -> Result<Installed> {
    install_spec(ns, &Spec::new(pod_ifaces, services))
}

/// As [`install`], from a [`Spec`], with the restore tool of its family: only that family's
/// tables are replaced.
pub fn install_spec(ns: &str, spec: &Spec) -> Result<Installed> {
    let ruleset = Ruleset::build(spec);
    let restore = format!("{}-restore", spec.family.iptables());
    let start = Instant::now();
    cmd::in_ns_with_input(ns, &restore, &[], ruleset.render().as_bytes())
        .with_context(|| format!("loading the calico-node ruleset with {restore}"))?;
    Ok(Installed { ruleset, took: start.elapsed() })
}

/// Rules per table of `family` as the kernel holds them in `ns` (`iptables-save` or
/// `ip6tables-save`, `-A` lines).
pub fn saved_rules(ns: &str, family: Family) -> Result<Vec<(String, usize)>> {
    let saved = cmd::in_ns_ok(ns, &format!("{}-save", family.iptables()), &[])?;
    let mut tables: Vec<(String, usize)> = Vec::new();
    for line in saved.lines() {
        if let Some(table) = line.strip_prefix('*') {
            tables.push((table.to_string(), 0));
        } else if line.starts_with("-A ") {
            let Some(current) = tables.last_mut() else { bail!("iptables-save: a rule before any table") };
            current.1 += 1;
        }
    }
    Ok(tables)
}

/// The packet counter of the one rule of `chain` in `family`'s `table` whose listing
/// (`iptables -L -v -x -n`, or `ip6tables`) contains `needle`.
pub fn rule_packets(ns: &str, family: Family, table: &str, chain: &str, needle: &str) -> Result<u64> {
    let listing = cmd::in_ns_ok(ns, family.iptables(), &["-t", table, "-L", chain, "-v", "-x", "-n"])?;
    let matching: Vec<&str> = listing.lines().skip(2).filter(|l| l.contains(needle)).collect();
    let [line] = matching[..] else {
        bail!("{} rules of {table} {chain} in {ns} mention {needle:?}:\n{listing}", matching.len());
    };
    line.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no counter in {line:?}"))
}

/// Packets of `family` the anti-spoofing rule (raw `cali-PREROUTING`, `-m rpfilter --validmark
/// --invert -j DROP`) dropped in `ns`.
pub fn rpfilter_drops(ns: &str, family: Family) -> Result<u64> {
    rule_packets(ns, family, "raw", "cali-PREROUTING", "rpfilter")
}

/// The connections conntrack tracks in `ns`, one line each (`/proc/net/nf_conntrack`), of
/// both families (each line starts with `ipv4` or `ipv6`).
pub fn conntrack(ns: &str) -> Result<Vec<String>> {
    let table = cmd::in_ns_ok(ns, "cat", &["/proc/net/nf_conntrack"])?;
    Ok(table.lines().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const A: &str = "cali0123456789a";
    const B: &str = "calib9876543210";

    fn ruleset(services: usize) -> Ruleset {
        Ruleset::build(&Spec::new(&[A, B], services))
    }

    fn rules<'a>(r: &'a Ruleset, table: &str, chain: &str) -> &'a [String] {
        &r.chain(table, chain).unwrap_or_else(|| panic!("{table} {chain} missing")).rules
    }

    /// The chain a rule jumps or goes to, if any.
    fn target(rule: &str) -> Option<&str> {
        let mut words = rule.split_whitespace();
        while let Some(word) = words.next() {
            if word == "-j" || word == "-g" {
                return words.next();
            }
        }
        None
    }

    const BUILTIN_TARGETS: [&str; 8] =
        ["ACCEPT", "DROP", "RETURN", "MARK", "DNAT", "MASQUERADE", "REJECT", "SNAT"];

    #[test]
    fn every_jump_lands_on_a_chain_of_its_table_and_names_fit_iptables() {
        let r = ruleset(1000);
        for table in &r.tables {
            let names: HashSet<&str> = table.chains.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names.len(), table.chains.len(), "a chain defined twice in {}", table.name);
            for chain in &table.chains {
                assert!(chain.name.len() <= 28, "{} is too long for iptables", chain.name);
                for rule in &chain.rules {
                    let to = target(rule).unwrap_or_else(|| panic!("no target: {rule}"));
                    assert!(
                        BUILTIN_TARGETS.contains(&to) || names.contains(to),
                        "{} {}: {rule} goes nowhere",
                        table.name,
                        chain.name
                    );
                }
            }
        }
    }

    #[test]
    fn raw_marks_workload_packets_and_drops_those_failing_the_reverse_path_check() {
        let r = ruleset(0);
        assert_eq!(rules(&r, "raw", "PREROUTING"), ["-j cali-PREROUTING"]);
        let pre = rules(&r, "raw", "cali-PREROUTING");
        assert_eq!(pre[0], "-j MARK --set-xmark 0x0/0xf0000");
        assert_eq!(pre[1], "-i cali+ -j MARK --set-xmark 0x40000/0x40000");
        assert_eq!(pre[3], "-m mark --mark 0x40000/0x40000 -m rpfilter --validmark --invert -j DROP");
        assert_eq!(pre.len(), 6);
    }

    #[test]
    fn mangle_accepts_established_connections_first() {
        let r = ruleset(0);
        assert_eq!(
            rules(&r, "mangle", "cali-PREROUTING")[0],
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        assert_eq!(rules(&r, "mangle", "POSTROUTING"), ["-j cali-POSTROUTING"]);
    }

    #[test]
    fn kube_services_has_one_rule_per_service_then_the_node_ports() {
        let r = Ruleset::build(&Spec::new(&[A], 3).with_service(Service::new(
            "ns/web:http",
            Ipv4Addr::new(10, 96, 0, 10),
            80,
            SocketAddrV4::new(Ipv4Addr::new(10, 244, 40, 37), 8080),
        )));
        let services = rules(&r, "nat", "KUBE-SERVICES");
        assert_eq!(services.len(), 5);
        assert!(services[0].contains("-d 10.96.1.0/32 --dport 80"), "{}", services[0]);
        assert!(
            services[3].contains("\"ns/web:http cluster IP\"") && services[3].contains("-d 10.96.0.10/32")
        );
        assert!(services[4].ends_with("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"), "{}", services[4]);
        let svc = target(&services[3]).unwrap();
        assert!(svc.starts_with("KUBE-SVC-") && svc.len() == 25, "{svc}");
        let svc_rules = rules(&r, "nat", svc);
        assert!(svc_rules[0].ends_with("! -s 10.244.0.0/16 -j KUBE-MARK-MASQ"), "{}", svc_rules[0]);
        let sep = target(&svc_rules[1]).unwrap();
        assert!(sep.starts_with("KUBE-SEP-"), "{sep}");
        assert!(rules(&r, "nat", sep)[0].contains("-s 10.244.40.37/32 -j KUBE-MARK-MASQ"));
        assert!(rules(&r, "nat", sep)[1].ends_with("-j DNAT --to-destination 10.244.40.37:8080"));
        assert_eq!(
            rules(&r, "nat", "PREROUTING")[1],
            "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
        );
        assert_eq!(rules(&r, "nat", "POSTROUTING").len(), 2);
    }

    #[test]
    fn generated_services_are_distinct_and_their_endpoints_stay_in_the_pool_away_from_the_pods() {
        let services = generated_services(20_000);
        let ips: HashSet<IpAddr> = services.iter().map(|s| s.cluster_ip).collect();
        assert_eq!(ips.len(), 20_000);
        for s in &services {
            let (IpAddr::V4(cluster_ip), SocketAddr::V4(backend)) = (s.cluster_ip, s.backend) else {
                panic!("{s:?} is not IPv4")
            };
            let backend = backend.ip().octets();
            assert_eq!(backend[..2], [10, 244], "{s:?}");
            assert!(backend[2] >= 200, "{s:?}");
            assert_eq!(cluster_ip.octets()[..2], [10, 96]);
        }
        let r = Ruleset::build(&Spec::new(&[], 20_000));
        let chains: HashSet<&str> = r.table("nat").unwrap().chains.iter().map(|c| c.name.as_str()).collect();
        // Every service's and endpoint's chain is its own (no hash collided).
        assert_eq!(chains.len(), 14 + 2 * 20_000);
    }

    #[test]
    fn endpoint_chains_lose_their_comments_in_a_large_cluster_as_kube_proxy_does() {
        let small = ruleset(1000);
        let large = ruleset(1001);
        let sep = |r: &Ruleset| {
            r.table("nat")
                .unwrap()
                .chains
                .iter()
                .find(|c| c.name.starts_with("KUBE-SEP-"))
                .unwrap()
                .rules
                .clone()
        };
        assert!(sep(&small)[1].contains("-m comment"));
        assert!(!sep(&large)[1].contains("-m comment"));
    }

    #[test]
    fn forward_runs_calico_then_kube_proxy_then_the_accept_mark() {
        let r = ruleset(10);
        let forward = r.chain("filter", "FORWARD").unwrap();
        assert_eq!(forward.policy, Some("DROP"));
        let targets: Vec<&str> = forward.rules.iter().filter_map(|rule| target(rule)).collect();
        assert_eq!(
            targets,
            [
                "cali-FORWARD",
                "KUBE-PROXY-FIREWALL",
                "KUBE-FORWARD",
                "KUBE-SERVICES",
                "KUBE-EXTERNAL-SERVICES",
                "ACCEPT",
                "MARK"
            ]
        );
        assert!(forward.rules[3].starts_with("-m conntrack --ctstate NEW"), "{}", forward.rules[3]);
        assert!(forward.rules[5].contains("-m mark --mark 0x10000/0x10000 -j ACCEPT"));
        let cali = rules(&r, "filter", "cali-FORWARD");
        assert_eq!(cali[2], "-i cali+ -j cali-from-wl-dispatch");
        assert_eq!(cali[3], "-o cali+ -j cali-to-wl-dispatch");
    }

    #[test]
    fn dispatch_has_one_rule_per_pod_interface_and_drops_unknown_ones() {
        let r = ruleset(0);
        assert_eq!(
            rules(&r, "filter", "cali-from-wl-dispatch"),
            [
                format!("-i {A} -g cali-fw-{A}"),
                format!("-i {B} -g cali-fw-{B}"),
                "-m comment --comment \"Unknown interface\" -j DROP".to_string()
            ]
        );
        assert_eq!(rules(&r, "filter", "cali-to-wl-dispatch")[1], format!("-o {B} -g cali-tw-{B}"));
    }

    #[test]
    fn workload_chains_start_with_conntrack_and_end_in_the_profiles_accept_mark() {
        let r = ruleset(0);
        for chain in [format!("cali-fw-{A}"), format!("cali-tw-{B}")] {
            let rules = rules(&r, "filter", &chain);
            assert_eq!(rules[0], "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
            assert_eq!(rules[1], "-m conntrack --ctstate INVALID -j DROP");
            assert!(rules.last().unwrap().ends_with("-j DROP"));
        }
        let from = rules(&r, "filter", &format!("cali-fw-{A}"));
        assert!(from.iter().any(|rule| rule == "-j cali-pro-kns.default"), "{from:?}");
        assert!(from.iter().any(|rule| rule.ends_with("-p 4 -j DROP")));
        let to = rules(&r, "filter", &format!("cali-tw-{A}"));
        assert!(to.iter().any(|rule| rule == "-j cali-pri-kns.default"));
        assert!(!to.iter().any(|rule| rule.contains("-p 4")), "traffic to a workload may be IPIP");
        assert_eq!(
            rules(&r, "filter", "cali-pro-kns.default"),
            ["-j MARK --set-xmark 0x10000/0x10000", "-m mark --mark 0x10000/0x10000 -j RETURN"]
        );
        assert!(rules(&r, "filter", "cali-pri-ksa.default.default").is_empty());
    }

    #[test]
    fn rule_counts_grow_by_five_per_service_and_twenty_per_pod() {
        let base = ruleset(0);
        let more = Ruleset::build(&Spec::new(&[A, B, "cali00000000000"], 1000));
        assert_eq!(more.rules_in("nat") - base.rules_in("nat"), 5 * 1000);
        assert_eq!(more.rules_in("filter") - base.rules_in("filter"), 20);
        assert_eq!(more.rules_in("raw"), base.rules_in("raw"));
        assert!(base.summary().contains("in"), "{}", base.summary());
    }

    #[test]
    fn the_rendered_text_is_what_iptables_restore_reads() {
        let text = ruleset(1).render();
        let tables: Vec<&str> = text.lines().filter(|l| l.starts_with('*')).collect();
        assert_eq!(tables, ["*raw", "*mangle", "*nat", "*filter"]);
        assert_eq!(text.matches("COMMIT\n").count(), 4);
        assert!(text.contains(":FORWARD DROP [0:0]\n"));
        assert!(text.contains(":cali-PREROUTING - [0:0]\n"));
        let rules = text.lines().filter(|l| l.starts_with("-A ")).count();
        assert_eq!(rules, ruleset(1).rules());
        // Every chain line comes before the first rule of its table.
        for block in text.split("COMMIT\n").filter(|b| !b.is_empty()) {
            let first_rule = block.find("\n-A ").unwrap_or(block.len());
            assert!(!block[first_rule..].contains("\n:"), "a chain declared after a rule:\n{block}");
        }
    }

    /// `r`'s chains and rules with every address replaced by `ADDR` (a prefix by `ADDR/LEN`) and
    /// every endpoint chain's name (a hash of its address) by `KUBE-SEP`.
    fn without_addresses(r: &Ruleset) -> Vec<(&str, String, Vec<String>)> {
        let word = |w: &str| -> String {
            let core = w.trim_matches('"');
            let bare = if core.starts_with("KUBE-SEP-") {
                "KUBE-SEP".to_string()
            } else if let Ok(at) = core.parse::<SocketAddr>() {
                format!("ADDR:{}", at.port())
            } else {
                let (addr, len) = core.split_once('/').unwrap_or((core, ""));
                match addr.parse::<IpAddr>() {
                    Ok(_) if len.is_empty() => "ADDR".into(),
                    Ok(_) => "ADDR/LEN".into(),
                    Err(_) => core.to_string(),
                }
            };
            w.replace(core, &bare)
        };
        let rules = |c: &Chain| -> Vec<String> {
            c.rules.iter().map(|rule| rule.split(' ').map(word).collect::<Vec<_>>().join(" ")).collect()
        };
        r.tables
            .iter()
            .flat_map(|t| t.chains.iter().map(move |c| (t.name, word(&c.name), rules(c))))
            .collect()
    }

    #[test]
    fn the_ipv6_ruleset_is_the_ipv4_one_with_ipv6_addresses() {
        let service = Service::new(
            "ns/web:http",
            Ipv4Addr::new(10, 96, 0, 10),
            80,
            SocketAddrV4::new(Ipv4Addr::new(10, 244, 40, 37), 8080),
        );
        let v4 = Spec::new(&[A, B], 20).with_service(service.clone());
        let v6 = v4.clone().in_family(Family::Ipv6);
        assert_eq!(v6.family, Family::Ipv6);
        let (r4, r6) = (Ruleset::build(&v4), Ruleset::build(&v6));
        assert_eq!((r4.family, r6.family), (Family::Ipv4, Family::Ipv6));
        // The same chains and rules, in the same order; only the addresses differ.
        assert_eq!(without_addresses(&r4), without_addresses(&r6));
        assert_eq!(r4.summary(), r6.summary());
        for table in ["raw", "mangle", "filter"] {
            assert_eq!(r4.table(table), r6.table(table), "{table} holds no address");
        }
        // The addresses: the pool, the cluster IP and the endpoint, each the IPv4 one's twin.
        let web = service.in_family(Family::Ipv6);
        assert_eq!(web.cluster_ip.to_string(), "fd00:10:96::a60:a");
        assert_eq!(web.backend.to_string(), "[fd5f:a1b2:c3d4::af4:2825]:8080");
        assert_eq!((web.name.as_str(), web.port), ("ns/web:http", 80));
        assert_eq!(
            rules(&r6, "nat", "cali-nat-outgoing"),
            ["-s fd5f:a1b2:c3d4::/48 ! -d fd5f:a1b2:c3d4::/48 -j MASQUERADE --random-fully"]
        );
        let portals = rules(&r6, "nat", "KUBE-SERVICES");
        assert!(portals[0].contains("-d fd00:10:96::a60:100/128 --dport 80"), "{}", portals[0]);
        assert!(portals[20].contains("-d fd00:10:96::a60:a/128 --dport 80"), "{}", portals[20]);
        // kube-proxy names a dual-stack service's chains alike in both families.
        assert_eq!(target(&portals[20]), target(&rules(&r4, "nat", "KUBE-SERVICES")[20]));
        let svc = rules(&r6, "nat", target(&portals[20]).unwrap());
        assert!(svc[0].ends_with("! -s fd5f:a1b2:c3d4::/48 -j KUBE-MARK-MASQ"), "{}", svc[0]);
        let sep = rules(&r6, "nat", target(&svc[1]).unwrap());
        assert!(sep[0].contains("-s fd5f:a1b2:c3d4::af4:2825/128 -j KUBE-MARK-MASQ"), "{}", sep[0]);
        assert!(sep[1].ends_with("-j DNAT --to-destination [fd5f:a1b2:c3d4::af4:2825]:8080"), "{}", sep[1]);
        // A generated endpoint stays away from the pods in IPv6 too.
        assert_eq!(v6.services[0].backend.ip().to_string(), "fd5f:a1b2:c3d4::af4:c800");
    }

    #[test]
    #[should_panic(expected = "in a ruleset of the other family")]
    fn a_ruleset_holds_services_of_its_own_family_only() {
        let service = Service::new(
            "ns/web:http",
            Ipv4Addr::new(10, 96, 0, 10),
            80,
            "10.244.40.37:8080".parse::<SocketAddr>().unwrap(),
        );
        let _ = Spec::new(&[A], 0).in_family(Family::Ipv6).with_service(service);
    }

    #[test]
    fn name_hashes_are_base32_and_stable() {
        let h = name_hash("ns/web:httptcp");
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)), "{h}");
        assert_eq!(h, name_hash("ns/web:httptcp"));
        assert_ne!(h, name_hash("ns/web:httpudp"));
    }
}
