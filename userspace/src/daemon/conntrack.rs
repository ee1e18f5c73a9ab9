//! Under `--trust kernel` conntrack sees a TCP connection's first packets and its close, but not
//! the segments the fast path carried in between. Its window tracking would then judge the close
//! out of window, INVALID, and policy that accepts only ESTABLISHED packets would drop it: the
//! connection could never close. Liberal tracking (`nf_conntrack_tcp_be_liberal`, what kube-proxy
//! also offers) accepts segments it did not see the window for.

use std::fs;

const BE_LIBERAL: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal";

/// Make this network namespace's conntrack liberal about TCP windows, saying so in the log.
pub fn tolerate_unseen_segments() {
    match fs::read_to_string(BE_LIBERAL) {
        Ok(value) if value.trim() == "1" => log::debug!("{BE_LIBERAL} is already 1"),
        Ok(_) => match fs::write(BE_LIBERAL, "1") {
            Ok(()) => log::info!(
                "set {BE_LIBERAL} to 1: conntrack does not see the segments the fast path carries, \
                 and must not judge a connection's close out of window"
            ),
            Err(e) => log::warn!("cannot set {BE_LIBERAL} to 1 ({e}): a TCP close after fast-pathed segments may be judged INVALID by conntrack"),
        },
        Err(_) => log::debug!("no {BE_LIBERAL}: conntrack is not loaded, nothing to tell it"),
    }
}
