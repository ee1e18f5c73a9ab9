//! Policy routing: which routing table the kernel consults for a pod's forwarded packet, from
//! its IPv4 rules (pure). The fast path reproduces the main table only; a destination that a rule
//! sends to another table (Calico's WireGuard table, an egress gateway's) goes to the kernel, so
//! nothing leaves the underlay that the kernel would have sent through another device.
//!
//! The kernel walks its rules in priority order (`fib_rules_lookup`): the first rule that matches
//! the packet and whose action yields a route decides. For a pod's packet the fast path knows it
//! carries no mark and arrives on a pod interface (or, decapsulated, from the underlay); any other
//! selector (source, destination, TOS, ports, uid) may match some pod's packets, so such a rule is
//! taken as matching them all. That is conservative: it can only send more to the kernel.

use std::{collections::BTreeSet, net::Ipv4Addr};

use crate::model::{
    route::{KernelRoute, Prefix, RouteKindOf, DEFAULT_TABLE, LOCAL_TABLE, MAIN_TABLE},
    rule::{default_rules, table_name, Rule, Verb},
};

impl Rule {
    /// Whether a pod's forwarded packet may meet this rule's selectors. `ours` tells whether an
    /// interface name is one a pod's packet can arrive on (a pod interface, the underlay, a
    /// tunnel device).
    fn applies(&self, ours: &dyn Fn(&str) -> bool) -> Applies {
        let excluded = self.iif.as_deref().is_some_and(|name| !ours(name))
            // A forwarded packet has no output interface when the rules are walked.
            || self.oif.is_some()
            // Nor a mark (the fast path carries it with none).
            || self.fwmark.is_some_and(|(mark, mask)| mark & mask != 0)
            || self.l3mdev;
        let narrowed = self.iif.is_some()
            || self.src.is_some_and(|(len, _)| len > 0)
            || self.dst.is_some_and(|(len, _)| len > 0)
            || self.tos != 0
            || self.other_selectors;
        let plain = if excluded {
            Applies::Never
        } else if narrowed {
            Applies::Some
        } else {
            Applies::Always
        };
        if !self.invert {
            return plain;
        }
        match plain {
            Applies::Never => Applies::Always,
            Applies::Always => Applies::Never,
            Applies::Some => Applies::Some,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applies {
    Never,
    Some,
    Always,
}

/// One step of the walk a pod's packet may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The main table decides, unless it has no route (or only a suppressed one).
    Main { suppress: Option<u8>, rule: Rule },
    /// Another table decides where it has a route that is not `throw` (or suppressed).
    Table { table: u32, suppress: Option<u8>, rule: Rule },
    /// The rule itself decides (blackhole, unreachable, prohibit, goto, or an action or
    /// suppression this walk does not follow): the kernel's.
    Stop { rule: Rule },
}

/// Where the rules send a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// The main table's route (the prefix's own, or the shortest-enough one covering it).
    Main(&'a KernelRoute),
    /// A rule sends it elsewhere than the main table: the kernel routes it.
    Diverted(&'a Step),
    /// No route at all.
    Unrouted,
}

/// The kernel's routes by prefix.
pub trait Routes {
    fn routes_of(&self, prefix: &Prefix) -> &[KernelRoute];
}

/// The rules as a pod's packet meets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    steps: Vec<Step>,
}

impl Default for Policy {
    /// The kernel's default rules: local, main, default.
    fn default() -> Self {
        Self::new(&default_rules(), &|_| true)
    }
}

impl Policy {
    /// The steps of `rules` (any order) that a pod's packet may take; `ours` as in
    /// [`Rule::applies`].
    pub fn new(rules: &[Rule], ours: &dyn Fn(&str) -> bool) -> Self {
        let mut sorted: Vec<&Rule> = rules.iter().collect();
        // Stable: rules of one priority keep the kernel's order.
        sorted.sort_by_key(|r| r.priority);
        let mut steps = Vec::new();
        for rule in sorted {
            if rule.applies(ours) == Applies::Never {
                continue;
            }
            let suppress = rule.suppress_prefixlen;
            let step = match rule.verb {
                // The local table holds this host's own addresses, which the programs never
                // carry (special destinations, the tunnel address) whatever the rules say.
                Verb::Lookup(LOCAL_TABLE) | Verb::Nop => continue,
                _ if rule.suppress_ifgroup.is_some() => Step::Stop { rule: rule.clone() },
                Verb::Lookup(MAIN_TABLE) => Step::Main { suppress, rule: rule.clone() },
                Verb::Lookup(table) => Step::Table { table, suppress, rule: rule.clone() },
                Verb::Goto(_) | Verb::Blackhole | Verb::Unreachable | Verb::Prohibit | Verb::Other(_) => {
                    Step::Stop { rule: rule.clone() }
                }
            };
            steps.push(step);
        }
        Self { steps }
    }

    /// Whether the rules may send some pod's packet anywhere but the main table.
    pub fn diverts(&self) -> bool {
        self.steps.iter().any(|s| !matches!(s, Step::Main { .. } | Step::Table { table: DEFAULT_TABLE, .. }))
    }

    /// The tables other than main the walk may consult: their prefixes need entries of their own.
    pub fn tables(&self) -> BTreeSet<u32> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Table { table, .. } => Some(*table),
                _ => None,
            })
            .collect()
    }

    /// Where the kernel sends a pod's packet to an address whose longest match among the
    /// prefixes the fast path writes is `prefix`.
    pub fn decide<'a>(&'a self, prefix: Prefix, routes: &'a impl Routes) -> Decision<'a> {
        let tables = self.tables();
        for step in &self.steps {
            match step {
                Step::Main { suppress, .. } => {
                    let own = preferred(routes.routes_of(&prefix), MAIN_TABLE);
                    // A prefix only another table has gets a copy of main's covering route, so
                    // that what the walk decides for it is written, not left to a shorter entry.
                    let found = match own {
                        Some(route) => Some(route),
                        None if routes.routes_of(&prefix).iter().any(|r| tables.contains(&r.table)) => {
                            longest(prefix, routes, MAIN_TABLE, false)
                        }
                        None => None,
                    };
                    match found {
                        Some(route) if !suppressed(route, *suppress) => return Decision::Main(route),
                        _ => {}
                    }
                }
                Step::Table { table, suppress, .. } => match longest(prefix, routes, *table, true) {
                    Some(route) if route.kind != RouteKindOf::Throw && !suppressed(route, *suppress) => {
                        return Decision::Diverted(step);
                    }
                    _ => {}
                },
                Step::Stop { .. } => return Decision::Diverted(step),
            }
        }
        Decision::Unrouted
    }
}

impl Policy {
    /// Why the rules send a pod's packet to `addr` elsewhere than the main table, in words
    /// (`None` when they do not); `ifname` names the route's interface.
    pub fn why_diverted(
        &self,
        addr: Ipv4Addr,
        routes: &impl Routes,
        ifname: &dyn Fn(u32) -> String,
    ) -> Option<String> {
        match self.decide((32, addr), routes) {
            Decision::Diverted(Step::Table { table, rule, .. }) => {
                let route = longest((32, addr), routes, *table, true)?;
                let mut words = format!("{}/{}", route.dst, route.prefix_len);
                if let Some(gateway) = route.gateway {
                    words.push_str(&format!(" via {gateway}"));
                }
                if let Some(oif) = route.oif {
                    words.push_str(&format!(" dev {}", ifname(oif)));
                }
                Some(format!(
                    "ip rule {rule} sends {addr} to table {}, whose route {words} the fast path does not reproduce",
                    table_name(*table)
                ))
            }
            Decision::Diverted(Step::Stop { rule }) => {
                Some(format!("ip rule {rule} decides for {addr} by itself"))
            }
            _ => None,
        }
    }
}

fn suppressed(route: &KernelRoute, suppress: Option<u8>) -> bool {
    suppress.is_some_and(|len| route.prefix_len <= len)
}

/// The route the kernel prefers among `routes` in `table` (lowest metric, then TOS 0).
pub fn preferred(routes: &[KernelRoute], table: u32) -> Option<&KernelRoute> {
    routes.iter().filter(|r| r.table == table).min_by_key(|r| (r.priority, r.tos))
}

/// The longest route of `table` covering `prefix` (the prefix itself included when `inclusive`).
fn longest(prefix: Prefix, routes: &impl Routes, table: u32, inclusive: bool) -> Option<&KernelRoute> {
    let (len, addr) = prefix;
    let top = if inclusive { len } else { len.checked_sub(1)? };
    (0..=top).rev().find_map(|l| preferred(routes.routes_of(&(l, mask(addr, l))), table))
}

fn mask(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & bits)
}

/// Whether `inner` lies inside `outer`.
pub fn contains(outer: Prefix, inner: Prefix) -> bool {
    outer.0 <= inner.0 && mask(inner.1, outer.0) == outer.1
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Table(HashMap<Prefix, Vec<KernelRoute>>);

    impl Routes for Table {
        fn routes_of(&self, prefix: &Prefix) -> &[KernelRoute] {
            self.0.get(prefix).map_or(&[], Vec::as_slice)
        }
    }

    fn table(routes: Vec<KernelRoute>) -> Table {
        let mut map: HashMap<Prefix, Vec<KernelRoute>> = HashMap::new();
        for r in routes {
            map.entry((r.prefix_len, r.dst)).or_default().push(r);
        }
        Table(map)
    }

    const WG: u32 = 1;
    const BLOCK: Prefix = (26, Ipv4Addr::new(10, 244, 166, 128));
    const LOCAL_BLOCK: Prefix = (26, Ipv4Addr::new(10, 244, 40, 0));

    fn via_tunl0(prefix: Prefix) -> KernelRoute {
        KernelRoute::main_unicast(prefix.1, prefix.0, Some(3), Some(Ipv4Addr::new(10, 101, 14, 51)))
    }

    fn in_table(prefix: Prefix, table: u32, kind: RouteKindOf) -> KernelRoute {
        KernelRoute { table, kind, gateway: None, oif: Some(9), ..via_tunl0(prefix) }
    }

    /// Felix's WireGuard rule (`not fwmark 0x100000/0x100000 lookup 1`, priority 99).
    fn wireguard_rule() -> Rule {
        Rule { invert: true, fwmark: Some((0x10_0000, 0x10_0000)), ..Rule::lookup(99, WG) }
    }

    fn with(rules: &[Rule]) -> Policy {
        let mut all = default_rules();
        all.extend_from_slice(rules);
        Policy::new(&all, &|_| true)
    }

    #[test]
    fn the_default_rules_leave_the_main_table_in_charge() {
        let policy = Policy::default();
        assert!(!policy.diverts());
        let routes = table(vec![via_tunl0(BLOCK)]);
        assert_eq!(policy.decide(BLOCK, &routes), Decision::Main(&routes.0[&BLOCK][0]));
        assert_eq!(policy.decide((32, Ipv4Addr::new(8, 8, 8, 8)), &routes), Decision::Unrouted);
    }

    #[test]
    fn wireguards_table_takes_what_it_routes_and_throws_the_rest_back_to_main() {
        let policy = with(&[wireguard_rule()]);
        assert!(policy.diverts());
        assert_eq!(policy.tables(), BTreeSet::from([WG, DEFAULT_TABLE]));
        let routes = table(vec![
            via_tunl0(BLOCK),
            KernelRoute { kind: RouteKindOf::Blackhole, ..via_tunl0(LOCAL_BLOCK) },
            in_table(BLOCK, WG, RouteKindOf::Unicast),
            in_table(LOCAL_BLOCK, WG, RouteKindOf::Throw),
        ]);
        assert!(matches!(policy.decide(BLOCK, &routes), Decision::Diverted(Step::Table { table: WG, .. })));
        assert_eq!(policy.decide(LOCAL_BLOCK, &routes), Decision::Main(&routes.0[&LOCAL_BLOCK][0]));
    }

    #[test]
    fn a_wider_route_elsewhere_covers_main_prefixes_and_a_throw_inside_it_gets_mains_copy() {
        let policy = with(&[Rule::lookup(100, 7)]);
        let pod = (32, Ipv4Addr::new(10, 244, 166, 150));
        let routes = table(vec![
            via_tunl0(BLOCK),
            in_table((8, Ipv4Addr::new(10, 0, 0, 0)), 7, RouteKindOf::Unicast),
            in_table(pod, 7, RouteKindOf::Throw),
        ]);
        assert!(matches!(policy.decide(BLOCK, &routes), Decision::Diverted(_)));
        // The kernel throws the pod's address back to main, whose block route covers it.
        assert_eq!(policy.decide(pod, &routes), Decision::Main(&routes.0[&BLOCK][0]));
    }

    #[test]
    fn rules_a_pods_packet_never_meets_are_skipped() {
        let marked = Rule { fwmark: Some((0x80000, 0x80000)), ..Rule::lookup(50, 7) };
        let from_lo = Rule { iif: Some("lo".into()), ..Rule::lookup(51, 7) };
        let to_oif = Rule { oif: Some("eth0".into()), ..Rule::lookup(52, 7) };
        let vrf = Rule { l3mdev: true, ..Rule::lookup(1000, 0) };
        let never = Rule { invert: true, ..Rule::lookup(53, 7) };
        let mut all = default_rules();
        all.extend([marked, from_lo, to_oif, vrf, never]);
        let policy = Policy::new(&all, &|name| name.starts_with("cali") || name == "eth0");
        assert!(!policy.diverts(), "{policy:?}");
        let from_pod = Rule { iif: Some("cali123".into()), ..Rule::lookup(54, 7) };
        all.push(from_pod);
        let policy = Policy::new(&all, &|name| name.starts_with("cali"));
        assert!(policy.diverts(), "a rule for one pod's interface may match");
    }

    #[test]
    fn a_source_selector_is_taken_as_matching_every_pod() {
        let egress = Rule { src: Some((32, Ipv4Addr::new(10, 244, 40, 36))), ..Rule::lookup(100, 200) };
        let policy = with(&[egress]);
        let routes =
            table(vec![via_tunl0(BLOCK), in_table((0, Ipv4Addr::UNSPECIFIED), 200, RouteKindOf::Unicast)]);
        assert!(matches!(policy.decide(BLOCK, &routes), Decision::Diverted(_)));
    }

    #[test]
    fn actions_that_decide_by_themselves_stop_the_fast_path() {
        for verb in [Verb::Blackhole, Verb::Unreachable, Verb::Prohibit, Verb::Goto(32766)] {
            let policy = with(&[Rule { verb, ..Rule::lookup(10, 0) }]);
            let routes = table(vec![via_tunl0(BLOCK)]);
            assert!(
                matches!(policy.decide(BLOCK, &routes), Decision::Diverted(Step::Stop { .. })),
                "{verb:?}"
            );
        }
        let nop = with(&[Rule { verb: Verb::Nop, ..Rule::lookup(10, 0) }]);
        assert!(!nop.diverts());
    }

    #[test]
    fn suppress_prefixlength_ignores_short_routes_as_the_kernel_does() {
        // wg-quick: `lookup main suppress_prefixlength 0` before `not fwmark … lookup 51820`.
        let main_first = Rule { suppress_prefixlen: Some(0), ..Rule::lookup(10, MAIN_TABLE) };
        let tunnel = Rule { invert: true, fwmark: Some((0xca6c, 0xffff_ffff)), ..Rule::lookup(11, 51820) };
        let policy = with(&[main_first, tunnel]);
        let default = KernelRoute::main_unicast(
            Ipv4Addr::UNSPECIFIED,
            0,
            Some(2),
            Some(Ipv4Addr::new(10, 101, 14, 62)),
        );
        let everything = in_table((0, Ipv4Addr::UNSPECIFIED), 51820, RouteKindOf::Unicast);
        let routes = table(vec![via_tunl0(BLOCK), default, everything]);
        assert_eq!(policy.decide(BLOCK, &routes), Decision::Main(&routes.0[&BLOCK][0]));
        let outside = (32, Ipv4Addr::new(8, 8, 8, 8));
        assert!(
            matches!(policy.decide(outside, &routes), Decision::Diverted(_)),
            "the default route is suppressed"
        );
    }

    #[test]
    fn the_deciding_rule_is_named() {
        let policy = with(&[wireguard_rule()]);
        let routes = table(vec![via_tunl0(BLOCK), in_table(BLOCK, WG, RouteKindOf::Unicast)]);
        let name = |_| "wireguard.cali".to_string();
        assert_eq!(
            policy.why_diverted(Ipv4Addr::new(10, 244, 166, 150), &routes, &name).as_deref(),
            Some("ip rule 99: not from all fwmark 0x100000/0x100000 lookup 1 sends 10.244.166.150 to table 1, whose route 10.244.166.128/26 dev wireguard.cali the fast path does not reproduce")
        );
        assert_eq!(policy.why_diverted(Ipv4Addr::new(10, 244, 40, 36), &routes, &name), None);
    }

    #[test]
    fn rules_print_as_ip_rule_does() {
        assert_eq!(wireguard_rule().to_string(), "99: not from all fwmark 0x100000/0x100000 lookup 1");
        assert_eq!(Rule::lookup(32766, MAIN_TABLE).to_string(), "32766: from all lookup main");
    }

    #[test]
    fn containment() {
        assert!(contains(BLOCK, (32, Ipv4Addr::new(10, 244, 166, 150))));
        assert!(contains(BLOCK, BLOCK));
        assert!(!contains(BLOCK, (32, Ipv4Addr::new(10, 244, 166, 100))));
        assert!(contains((0, Ipv4Addr::UNSPECIFIED), BLOCK));
        assert!(!contains((32, Ipv4Addr::new(10, 244, 166, 150)), BLOCK));
    }
}
