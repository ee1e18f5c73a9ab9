//! IPv4 policy-routing rules (`ip rule`).

use std::fmt;

use crate::model::route::{Prefix, DEFAULT_TABLE, LOCAL_TABLE, MAIN_TABLE};

/// What a rule does when it matches (`FR_ACT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Look the destination up in this table.
    Lookup(u32),
    Goto(u32),
    Nop,
    Blackhole,
    Unreachable,
    Prohibit,
    Other(u8),
}

/// An IPv4 rule, reduced to what deciding needs (`ip rule` prints the same).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub priority: u32,
    pub verb: Verb,
    /// `not`: the rule matches what its selectors do not.
    pub invert: bool,
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// `fwmark MARK/MASK`.
    pub fwmark: Option<(u32, u32)>,
    pub tos: u8,
    /// `l3mdev`: only packets of a VRF, which a pod's are not.
    pub l3mdev: bool,
    /// Selectors a pod's packets may or may not meet (ipproto, ports, uidrange, tun_id).
    pub other_selectors: bool,
    /// `suppress_prefixlength N`: a route this short or shorter is ignored, and the walk goes on.
    pub suppress_prefixlen: Option<u8>,
    /// `suppress_ifgroup G`.
    pub suppress_ifgroup: Option<u32>,
}

impl Rule {
    /// A rule that looks up `table` for every packet: the default rules' shape.
    pub fn lookup(priority: u32, table: u32) -> Self {
        Self {
            priority,
            verb: Verb::Lookup(table),
            invert: false,
            src: None,
            dst: None,
            iif: None,
            oif: None,
            fwmark: None,
            tos: 0,
            l3mdev: false,
            other_selectors: false,
            suppress_prefixlen: None,
            suppress_ifgroup: None,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.priority)?;
        if self.invert {
            write!(f, "not ")?;
        }
        match self.src {
            Some((len, addr)) if len > 0 => write!(f, "from {addr}/{len}")?,
            _ => write!(f, "from all")?,
        }
        if let Some((len, addr)) = self.dst {
            write!(f, " to {addr}/{len}")?;
        }
        if let Some((mark, mask)) = self.fwmark {
            write!(f, " fwmark {mark:#x}/{mask:#x}")?;
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        if let Some(oif) = &self.oif {
            write!(f, " oif {oif}")?;
        }
        match self.verb {
            Verb::Lookup(table) => write!(f, " lookup {}", table_name(table))?,
            Verb::Goto(target) => write!(f, " goto {target}")?,
            Verb::Nop => write!(f, " nop")?,
            Verb::Blackhole => write!(f, " blackhole")?,
            Verb::Unreachable => write!(f, " unreachable")?,
            Verb::Prohibit => write!(f, " prohibit")?,
            Verb::Other(code) => write!(f, " action {code}")?,
        }
        if let Some(len) = self.suppress_prefixlen {
            write!(f, " suppress_prefixlength {len}")?;
        }
        Ok(())
    }
}

/// A table's name as `ip rule` prints it.
pub fn table_name(table: u32) -> String {
    match table {
        MAIN_TABLE => "main".into(),
        LOCAL_TABLE => "local".into(),
        DEFAULT_TABLE => "default".into(),
        other => other.to_string(),
    }
}

/// `ip rule` on a fresh network namespace.
pub fn default_rules() -> Vec<Rule> {
    vec![Rule::lookup(0, LOCAL_TABLE), Rule::lookup(32766, MAIN_TABLE), Rule::lookup(32767, DEFAULT_TABLE)]
}
