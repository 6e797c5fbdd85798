//! The trusted-cluster rule (`signal.trusted_clusters`), for both phases. The cluster is a
//! host property, so it is passed as a function, called only when the rule needs it.

use super::{grant_signal, request::RandomId, Pending, Record};
use crate::config::Config;

/// Whether responses from `cluster` may signal: always when no cluster is listed, otherwise
/// only a listed one (an unknown cluster is not trusted).
pub fn cluster_trusted(cfg: &Config, cluster: impl FnOnce() -> Option<Vec<u8>>) -> bool {
    cfg.signal.trusted_clusters.is_empty() || cfg.cluster_may_signal(cluster().as_deref())
}

/// Request phase: if the routed cluster may signal, draw the next ID and return the header
/// that tells the auth upstream. The routed cluster is the one Envoy resolved before this
/// filter ran; after a stripped path it may be stale (Envoy re-routes when forwarding), so
/// [`trust_on_response`] decides again on the cluster that answered.
pub fn trust_on_request(
    cfg: &Config,
    pending: &mut Pending,
    routed_cluster: impl FnOnce() -> Option<Vec<u8>>,
    rec: &mut Record,
    random_id: RandomId<'_>,
) -> Option<(String, String)> {
    if !cluster_trusted(cfg, routed_cluster) {
        return None;
    }
    grant_signal(cfg, pending, rec, random_id)
}

/// Response phase: a signal is honoured only if the cluster that answered may signal. Only
/// a restricted list needs the second look (an empty one trusted the request already).
pub fn trust_on_response(
    cfg: &Config,
    pending: &mut Pending,
    signalled: bool,
    answering_cluster: impl FnOnce() -> Option<Vec<u8>>,
    rec: &mut Record,
    random_id: RandomId<'_>,
) {
    if !signalled || cfg.signal.trusted_clusters.is_empty() {
        return;
    }
    let trusted = cluster_trusted(cfg, answering_cluster);
    if trusted && pending.next_id.is_none() {
        // The auth upstream could not bind this ID in advance; the rotation is as safe.
        let _ = grant_signal(cfg, pending, rec, random_id);
    }
    pending.may_signal = trusted;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::policy::Issue;
    use crate::token::SessionId;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn cfg(extra: &str) -> Config {
        let json = format!(r#"{{"keys":[{{"id":"k1","secret":"{KEY}"}}]{extra}}}"#);
        parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn pending() -> Pending {
        Pending {
            session: None,
            issue: Issue::None,
            next_id: None,
            may_signal: false,
            request_id: "r".into(),
            now: 1,
            ..Default::default()
        }
    }

    fn cluster(name: &'static str) -> impl FnOnce() -> Option<Vec<u8>> {
        move || Some(name.as_bytes().to_vec())
    }

    #[test]
    fn rule() {
        let open = cfg("");
        let never = || -> Option<Vec<u8>> { unreachable!("no list: the cluster is not read") };
        assert!(cluster_trusted(&open, never));
        let auth = cfg(r#","signal":{"trusted_clusters":["auth"]}"#);
        assert!(cluster_trusted(&auth, cluster("auth")));
        assert!(!cluster_trusted(&auth, cluster("app")));
        assert!(!cluster_trusted(&auth, || None));
    }

    #[test]
    fn request_phase_grants_next_id_to_trusted_clusters_only() {
        let auth = cfg(r#","signal":{"trusted_clusters":["auth"]}"#);
        let mut rec = Record::default();
        let mut p = pending();
        let h = trust_on_request(&auth, &mut p, cluster("app"), &mut rec, &mut || {
            Some([1; 16])
        });
        assert_eq!((h, p.may_signal, p.next_id), (None, false, None));
        let h = trust_on_request(&auth, &mut p, cluster("auth"), &mut rec, &mut || {
            Some([1; 16])
        });
        assert_eq!(h.unwrap().0, "x-session-id-next");
        assert_eq!((p.may_signal, p.next_id), (true, Some(SessionId([1; 16]))));
    }

    #[test]
    fn response_phase_decides_on_the_answering_cluster() {
        let auth = cfg(r#","signal":{"trusted_clusters":["auth"]}"#);
        let mut rec = Record::default();
        // Routed to app (no next ID), answered by auth: trusted, a next ID drawn now.
        let mut p = pending();
        trust_on_response(&auth, &mut p, true, cluster("auth"), &mut rec, &mut || {
            Some([2; 16])
        });
        assert_eq!((p.may_signal, p.next_id), (true, Some(SessionId([2; 16]))));
        // Routed to auth, answered by app: not trusted.
        trust_on_response(&auth, &mut p, true, cluster("app"), &mut rec, &mut || None);
        assert!(!p.may_signal);
        // No signal, or no list: nothing read, nothing changed.
        let mut q = pending();
        let never = || -> Option<Vec<u8>> { unreachable!() };
        trust_on_response(&auth, &mut q, false, never, &mut rec, &mut || None);
        trust_on_response(&cfg(""), &mut q, true, never, &mut rec, &mut || None);
        assert_eq!(q, pending());
        assert!(rec.counters.is_empty());
    }
}
