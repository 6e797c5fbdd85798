//! Counter names: one per decision, under the `session_guard` prefix. Envoy shows them in
//! `/stats` as `wasmcustom.<name>` and in `/stats/prometheus` with dots as underscores.

macro_rules! counters {
    ($( $variant:ident => $name:literal, $help:literal; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter { $( $variant, )* }

        impl Counter {
            pub const ALL: &'static [Counter] = &[ $( Counter::$variant, )* ];

            pub fn name(self) -> &'static str {
                match self { $( Counter::$variant => $name, )* }
            }

            pub fn help(self) -> &'static str {
                match self { $( Counter::$variant => $help, )* }
            }

            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

counters! {
    UrlStripped => "session_guard.url.stripped", "requests forwarded after session parameters were removed from the URL";
    UrlRedirected => "session_guard.url.redirected", "GET/HEAD requests answered 302 to the URL without session parameters (url.action redirect)";
    UrlRejected => "session_guard.url.rejected", "requests answered 400 because the URL carried session parameters (url.action reject)";
    UrlParamsRemoved => "session_guard.url.params_removed", "session parameters found in URLs (query and path parameters; several per request possible)";
    UrlUnsafePath => "session_guard.url.unsafe_path", "requests answered 400 because removing session parameters would leave an empty, . or .. path segment the client did not send";
    RefererScrubbed => "session_guard.referer.scrubbed", "Referer headers forwarded with session parameters removed";
    SessionMinted => "session_guard.session.minted", "new anonymous sessions committed (cookie set on a response to a request without a valid mesh cookie)";
    SessionNotCommitted => "session_guard.session.not_committed", "fresh IDs forwarded but never committed: the response was shared-cacheable, a 304/206, or (cookie.anonymous navigate) not a navigation and set no cookie";
    Exempt => "session_guard.exempt", "requests on exempt.paths: nothing minted or re-issued, caching fields left alone, every defense applied";
    SessionValid => "session_guard.session.valid", "requests with a valid mesh cookie";
    SessionReissued => "session_guard.session.reissued", "valid cookies re-issued with a new last-use time (sliding idle timeout), never on a shared-cacheable, 304 or 206 response";
    InvalidForged => "session_guard.session.invalid.forged", "mesh cookies whose signature did not verify";
    InvalidUnknownKey => "session_guard.session.invalid.unknown_key", "mesh cookies signed with a key id not in the key ring";
    InvalidMalformed => "session_guard.session.invalid.malformed", "mesh cookies that are not a session-guard value";
    InvalidOversized => "session_guard.session.invalid.oversized", "mesh cookies longer than 4096 bytes";
    InvalidExpiredAbsolute => "session_guard.session.invalid.expired_absolute", "mesh cookies older than cookie.max_age_s";
    InvalidExpiredIdle => "session_guard.session.invalid.expired_idle", "mesh cookies unused for longer than cookie.idle_timeout_s";
    InvalidRevoked => "session_guard.session.invalid.revoked", "mesh cookies of sessions revoked by configuration (revoke.not_before, revoke.subjects, revoke.sessions) or ended by a logout on this proxy (logout.refused)";
    InvalidWrongScope => "session_guard.session.invalid.wrong_scope", "mesh cookies minted for another scope (cookie.scope: another host or tenant)";
    ClientChanged => "session_guard.session.client_changed", "valid sessions presented by a client whose User-Agent fingerprint differs from the one recorded at minting or rotation";
    AppCookieBound => "session_guard.app_cookie.bound", "app session cookies bound to the mesh session (an upstream Set-Cookie of an app_cookies name)";
    AppCookieUnbound => "session_guard.app_cookie.unbound", "app session cookies removed from a request because their value is not bound to the request's mesh session";
    AppCookieAdopted => "session_guard.app_cookie.adopted", "unbound app session cookies bound instead of removed (app_cookies.adopt_until window)";
    AppCookieReleased => "session_guard.app_cookie.released", "app cookie bindings removed because the upstream deleted the cookie";
    AppCookieOverLimit => "session_guard.app_cookie.over_limit", "app cookie bindings beyond 8 per session; the oldest binding was dropped";
    InvalidDuplicate => "session_guard.session.invalid.duplicate", "requests with two or more mesh cookies (a tossed cookie): none used";
    RotationLogin => "session_guard.rotation.login", "session IDs rotated on a login signal";
    RotationPrivilege => "session_guard.rotation.privilege", "session IDs rotated on a privilege signal";
    Logout => "session_guard.logout", "sessions ended by a logout signal (cookie expired)";
    SignalUntrusted => "session_guard.signal.untrusted", "signals from clusters outside signal.trusted_clusters, ignored and removed";
    SignalInvalidSubject => "session_guard.signal.invalid_subject", "subjects refused (missing, empty, over 256 bytes or not printable ASCII)";
    LogoutRecorded => "session_guard.logout.recorded", "sessions ended by logout recorded in this proxy's denylist (refused by every worker until their absolute expiry)";
    LogoutRefused => "session_guard.logout.refused", "requests presenting a session this proxy's logout denylist holds (also counted as session.invalid.revoked)";
    LogoutDenylistFull => "session_guard.logout.denylist_full", "logouts not recorded because their denylist bucket was full (the session's copies stay valid until their absolute expiry; end it fleet-wide with revoke.sessions)";
    SignalUnknown => "session_guard.signal.unknown", "signal header values other than login, privilege, logout; ignored and removed";
    SpoofedHeadersRemoved => "session_guard.spoofed_headers_removed", "client-sent x-session-id / x-session-subject / x-session-id-next headers removed";
    UpstreamCookieBlocked => "session_guard.upstream_cookie.blocked", "upstream Set-Cookie headers for the mesh cookie's name (or, with DBSC, the ticket's), removed";
    UpstreamCookieHardened => "session_guard.upstream_cookie.hardened", "upstream Set-Cookie headers given missing Secure/HttpOnly/SameSite";
    InvalidUnbound => "session_guard.session.invalid.unbound", "authenticated sessions not bound to a device key dbsc.require_bound_after_s after their login";
    DbscOffered => "session_guard.dbsc.offered", "responses that offered device-bound session registration (Secure-Session-Registration)";
    DbscRegistered => "session_guard.dbsc.registered", "sessions bound to a device key at the registration endpoint";
    DbscRefreshed => "session_guard.dbsc.refreshed", "bound-cookie tickets issued at the refresh endpoint after a proof of the device key";
    DbscChallenged => "session_guard.dbsc.challenged", "endpoint requests answered 403 with a new challenge (no proof, a stale or foreign challenge, a bad signature)";
    DbscEnded => "session_guard.dbsc.ended", "refreshes answered {\"continue\": false}: the browser's device-bound session ends (session expired, revoked, logged out, key removed, id forged)";
    DbscUnproven => "session_guard.dbsc.unproven", "requests of a bound session without a valid ticket: forwarded with no identity and no app session cookie (dbsc monitor: counted and forwarded as sent)";
    DbscRebound => "session_guard.dbsc.rebound", "authenticated unbound sessions bound again from a valid ticket (a response re-issued the unbound cookie while the browser registered)";
    DbscAppCookieWithheld => "session_guard.dbsc.app_cookie_withheld", "app session Set-Cookies removed from responses to unproven requests (they would replace the browser's bound app cookie)";
    DbscVerified => "session_guard.dbsc.verified", "ECDSA signature verifications run (each after every MAC check passed)";
    DbscInvalidSession => "session_guard.dbsc.invalid.session", "endpoint requests without a valid (authenticated) mesh session";
    DbscInvalidBound => "session_guard.dbsc.invalid.bound", "registrations refused because the session is already bound to a device key";
    DbscInvalidId => "session_guard.dbsc.invalid.id", "refreshes whose session identifier is missing, forged or signed by a removed key";
    DbscInvalidBinding => "session_guard.dbsc.invalid.binding", "refreshes whose session is bound to another device key, or to none";
    DbscInvalidJwt => "session_guard.dbsc.invalid.jwt", "proofs that are not a valid dbsc+jwt (format, alg, typ, jwk)";
    DbscInvalidChallenge => "session_guard.dbsc.invalid.challenge", "proofs over a challenge that is forged, foreign or stale";
    DbscInvalidSignature => "session_guard.dbsc.invalid.signature", "proofs whose ES256 signature does not verify";
    DbscInvalidTicket => "session_guard.dbsc.invalid.ticket", "bound-cookie tickets presented forged, expired or for another device key";
    DbscInvalidMethod => "session_guard.dbsc.invalid.method", "endpoint requests with a method other than POST (answered 405)";
    InternalError => "session_guard.internal_error", "host calls that failed or randomness unavailable; the request continued unchanged where safe";
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_indexed_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert!(c.name().starts_with("session_guard."));
            assert!(!c.help().is_empty());
            assert_eq!(
                Counter::ALL.iter().filter(|d| d.name() == c.name()).count(),
                1
            );
        }
    }
}
