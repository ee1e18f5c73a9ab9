//! Which interfaces get the pod program, and what a link event means for them (pure).

use std::collections::HashMap;

use crate::model::link::Link;

/// The interfaces the daemon should serve: every name with the prefix, plus any named explicitly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub prefix: String,
    pub explicit: Vec<String>,
}

impl Selector {
    pub fn wants(&self, name: &str) -> bool {
        name.starts_with(&self.prefix) || self.explicit.iter().any(|e| e == name)
    }
}

/// What the daemon must do about one link event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Attach(Link),
    /// The interface still exists but no longer matches (renamed): take the program off.
    Detach(Link),
    /// The interface is gone; the kernel already dropped its tcx link, so only forget it.
    Forget(Link),
    Nothing,
}

/// Decide what a link that appeared or changed means, given what is attached now
/// (ifindex → interface name when attached).
pub fn on_link_present(selector: &Selector, attached: &HashMap<u32, String>, link: Link) -> Action {
    match (attached.contains_key(&link.index), selector.wants(&link.name)) {
        (false, true) => Action::Attach(link),
        (true, false) => Action::Detach(link),
        _ => Action::Nothing,
    }
}

/// Decide what a link that disappeared means.
pub fn on_link_gone(attached: &HashMap<u32, String>, link: Link) -> Action {
    if attached.contains_key(&link.index) {
        Action::Forget(link)
    } else {
        Action::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector() -> Selector {
        Selector { prefix: "cali".into(), explicit: vec!["eth9".into()] }
    }

    fn link(index: u32, name: &str) -> Link {
        Link { index, name: name.into() }
    }

    #[test]
    fn prefix_and_explicit_names_are_wanted() {
        let s = selector();
        assert!(s.wants("cali0f293e89ca7"));
        assert!(s.wants("eth9"));
        assert!(!s.wants("eth0"));
        assert!(!s.wants("tunl0"));
        assert!(!s.wants("xcali1"));
    }

    #[test]
    fn a_new_matching_link_is_attached_once() {
        let mut attached = HashMap::new();
        let l = link(7, "cali1");
        assert_eq!(on_link_present(&selector(), &attached, l.clone()), Action::Attach(l.clone()));
        attached.insert(7, "cali1".to_string());
        assert_eq!(on_link_present(&selector(), &attached, l), Action::Nothing);
    }

    #[test]
    fn other_links_are_left_alone() {
        let attached = HashMap::new();
        assert_eq!(on_link_present(&selector(), &attached, link(2, "eth0")), Action::Nothing);
        assert_eq!(on_link_gone(&attached, link(2, "eth0")), Action::Nothing);
    }

    #[test]
    fn a_renamed_link_that_stops_matching_is_detached() {
        let attached = HashMap::from([(7, "cali1".to_string())]);
        let l = link(7, "pod1");
        assert_eq!(on_link_present(&selector(), &attached, l.clone()), Action::Detach(l));
    }

    #[test]
    fn a_deleted_attached_link_is_forgotten() {
        let attached = HashMap::from([(7, "cali1".to_string())]);
        let l = link(7, "cali1");
        assert_eq!(on_link_gone(&attached, l.clone()), Action::Forget(l));
    }
}
