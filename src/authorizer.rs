//! The request decision, pure: configuration, keys and the token cache in, a
//! [`Decision`] out. Time is passed in; fetching and signature checks are the glue's.
//!
//! For an MCP request ([`Authorizer::check`]):
//! 1. A browser `Origin` must be allowed (R10), else 403.
//! 2. The method must be GET, POST or DELETE, else 405.
//! 3. A bearer token must be present (R8), else 401 with a bare challenge.
//! 4. A token seen before and still live is taken from the cache; otherwise it is
//!    parsed, its key looked up ([`Decision::NeedKeys`] when the JWKS is missing,
//!    stale or lacks the `kid`), and its signature handed to the glue
//!    ([`Decision::Verify`]). Its claims (R4) are checked then too, and, when they
//!    pass, the forward decision is made ahead ([`Authorizer::ahead`]): it is used
//!    only once the glue reports a good signature ([`Authorizer::accept`]);
//!    anything else ends in [`Authorizer::complete`].
//!    With `INTROSPECTION_URL`, a token that is not a JWT (and, with
//!    `INTROSPECT_JWTS`, a JWT once valid locally) is sent to the introspection
//!    endpoint ([`Decision::Introspect`]); [`Authorizer::install_introspection`] reads
//!    the answer and caches it ([`crate::introspection`]).
//! 5. With a `SCOPE_POLICY`, a POST's body is read ([`Decision::NeedBody`] asks the
//!    glue for it, only once a bearer token is present) and inspected
//!    ([`crate::jsonrpc::inspect`]): malformed is 400 (JSON-RPC -32700/-32600), larger than
//!    `POLICY_MAX_BODY_BYTES` is 413, MCP headers missing (2026-07-28), malformed or
//!    disagreeing with it are 400 -32020 with the request's id
//!    ([`crate::jsonrpc::check_headers`], R11/R12).
//! 6. `REQUIRED_SCOPES`, plus what the policy asks of every message in the body (its
//!    name, its arguments, a listen request's resources), must be granted, by the
//!    token's scopes or the broader ones implying them (`SCOPE_HIERARCHY`, R15), else
//!    403 `insufficient_scope` naming all of them (R7). Only then is an `Mcp-Param-*`
//!    header an argument rule reads checked against the body (-32020, R13): a client
//!    must learn what to step up to before it can know a hidden tool's headers.
//! 7. With `TOKEN_EXCHANGE`, the token must have been exchanged for one to the origin
//!    ([`Decision::Exchange`] asks the flow to, once per token; [`crate::exchange`]):
//!    that one is forwarded as the origin's `Authorization`, a refusal is the answer.
//! 8. The request is forwarded with the identity headers ([`Decision::Forward`]),
//!    with a [`FilterSpec`] when its answer holds list results to rewrite (list
//!    requests, and resumed streams: a GET with `Last-Event-ID`), and to mark
//!    `"cacheScope": "private"` (R14).
//!
//! Other routes go through [`crate::routes::serve`], which answers what needs no I/O
//! and names the I/O the rest needs ([`crate::routes::Serve`]).

use crate::cache::{self, Refusal, TokenCache, TokenHash};
use crate::config::{Config, LogLevel};
use crate::error::{ChallengeContext, Error, Reply};
use crate::introspection::{self, Verdict};
use crate::jsonrpc::{FilterSpec, McpHeaders};
use crate::jwks::{self, Key, Lookup};
use crate::log::LogLine;
use crate::metadata;
use crate::proxy;
use crate::router::{self, Route};
use crate::token::{self, Principal};
use jsonwebtoken::Algorithm;

/// How many validated tokens one isolate keeps.
pub const TOKEN_CACHE_CAPACITY: usize = 4096;
pub use crate::metadata::METADATA_TTL_SECONDS;
/// How many forged tokens (bad signatures) one isolate remembers, and for how long.
pub const REFUSAL_CACHE_CAPACITY: usize = 1024;
pub const REFUSAL_SECONDS: i64 = 60;
pub use crate::jwks::FAILED_FETCH_BACKOFF_SECONDS;

/// The parts of a request the decision needs: strings, no runtime objects. The body
/// and the MCP headers are only read when a `SCOPE_POLICY` asks for them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub body: Body<'a>,
    /// `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`.
    pub mcp: McpHeaders<'a>,
    /// The `DPoP` proof header (read only with `DPOP` on).
    pub dpop: Option<&'a str>,
    /// A GET carrying `Last-Event-ID`: a resumed stream may replay list answers.
    pub resuming: bool,
    /// A preflight's `Access-Control-Request-Headers`.
    pub preflight_headers: Option<&'a str>,
}

/// A POST body, as the glue could read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Body<'a> {
    /// Not read (no policy, or not asked for yet).
    #[default]
    Unread,
    Text(&'a str),
    /// Longer than `POLICY_MAX_BODY_BYTES`.
    TooLarge,
    /// Not UTF-8, so not JSON.
    NotUtf8,
}

/// A signature the glue must check before the token can be accepted, and what its
/// claims say, checked already: no copy of the token or the request is kept.
#[derive(Debug, Clone)]
pub struct Pending {
    /// [`Key::id`] of the key to check it with (see [`Authorizer::key`]).
    pub key_id: String,
    pub alg: Algorithm,
    /// Lengths of the signing input and of the base64url signature: the glue slices
    /// both from the token.
    input_len: usize,
    signature_len: usize,
    kid: Option<String>,
    hash: TokenHash,
    /// The caller if the signature verifies, or why the token is refused even so.
    claims: Result<Principal, Error>,
}

#[derive(Debug, Clone)]
pub enum Decision {
    Forward {
        target: String,
        headers: Vec<(&'static str, String)>,
        cors: Vec<(&'static str, String)>,
        /// Rewrite list answers in the response (see [`crate::sse`]).
        filter: Option<FilterSpec>,
        /// Keys the entry counts with the rate-limiting bindings before forwarding:
        /// `(binding, key)`.
        limits: Vec<(&'static str, String)>,
        /// The signing input of the identity assertion for the origin
        /// (`ASSERTION_KEY`, [`crate::assertion`]): the entry signs it (once per input)
        /// and sends it in the assertion header.
        assertion: Option<std::rc::Rc<str>>,
        /// The DPoP proof's signature, for the entry to verify before forwarding.
        proof: Option<Box<crate::dpop::Check>>,
        log: LogLine,
    },
    Reply {
        reply: Reply,
        log: LogLine,
    },
    /// Fetch the JWKS (and discovery, if needed), then decide again.
    NeedKeys,
    /// Read the request body (at most this many bytes), then decide again.
    NeedBody(usize),
    Verify(Box<Pending>),
    /// Ask the introspection endpoint about the request's token, then
    /// [`Authorizer::install_introspection`] and [`Authorizer::finish_introspection`].
    Introspect,
    /// Exchange the request's token, which expires at `exp`, for one to the origin
    /// (`TOKEN_EXCHANGE`, [`crate::exchange`]), then decide again.
    Exchange {
        exp: i64,
    },
    /// Not an MCP request: see [`crate::routes::serve`].
    NotMcp,
}

#[derive(Debug)]
pub struct Authorizer {
    pub cfg: Config,
    /// The keys and their refresh policy.
    keys: jwks::KeyStore,
    /// Discovered authorization-server metadata, and discovery's back-off.
    pub discovery: metadata::Discovery,
    cache: TokenCache,
    refused: TokenCache<Refusal>,
    /// Introspection answers, and JWTs waiting for one (`INTROSPECT_JWTS`).
    introspected: introspection::Answers,
    /// Outcomes of introspection calls, for the requests that shared one.
    pub introspection_outcomes: introspection::Outcomes,
    /// Client ID Metadata Documents and the records this isolate wrote.
    pub cimd: crate::cimd::Memory,
    /// Identity-assertion signing inputs, per token and window.
    assertion_inputs: crate::assertion::Inputs,
    /// Tokens exchanged for the origin, per subject token (`TOKEN_EXCHANGE`).
    pub exchanges: crate::exchange::Exchanges,
    /// DPoP proofs seen (`DPOP`), so none is taken twice by this isolate. Written
    /// when a forward decision is made, from `&self` decisions too.
    dpop_seen: std::cell::RefCell<crate::dpop::Seen>,
    /// Rate-limiting bindings present (`MCP_RATE_LIMITER`, `MCP_CLIENT_RATE_LIMITER`):
    /// forward decisions then name the keys to count.
    pub limit_subjects: bool,
    pub limit_clients: bool,
}

fn bad_signature() -> Error {
    Error::InvalidToken("the token's signature does not verify".into())
}

fn log_line(route: Route, req: &RequestInfo<'_>, decision: &'static str, status: u16) -> LogLine {
    LogLine {
        route: route.name(),
        method: req.method.to_string(),
        path: req.path.to_string(),
        decision,
        status,
        ..Default::default()
    }
}

impl Authorizer {
    pub fn new(cfg: Config) -> Authorizer {
        Authorizer {
            keys: jwks::KeyStore::new(cfg.upstream.jwks_ttl, cfg.upstream.jwks_max_stale),
            cfg,
            discovery: Default::default(),
            cache: TokenCache::new(TOKEN_CACHE_CAPACITY),
            refused: TokenCache::new(REFUSAL_CACHE_CAPACITY),
            introspected: Default::default(),
            introspection_outcomes: Default::default(),
            cimd: Default::default(),
            assertion_inputs: Default::default(),
            exchanges: Default::default(),
            dpop_seen: Default::default(),
            limit_subjects: false,
            limit_clients: false,
        }
    }

    pub fn challenge_context(&self) -> ChallengeContext {
        ChallengeContext {
            resource_metadata: self.cfg.resource_metadata_url(),
            scope: self.cfg.scopes.required.clone(),
            dpop_algs: self.cfg.dpop.as_ref().map(|d| d.algs()),
            dpop_required: self
                .cfg
                .dpop
                .as_ref()
                .is_some_and(|d| d.mode == crate::dpop::Mode::Required),
            dpop_scheme: false,
        }
    }

    pub fn log_level(&self) -> LogLevel {
        self.cfg.log_level
    }

    /// Turn an error into the decision that answers it (the one mapping lives in
    /// [`Error::reply`]); on the MCP route an allowed browser origin gets CORS headers.
    pub fn refuse(&self, route: Route, req: &RequestInfo<'_>, err: &Error) -> Decision {
        let mut ctx = self.challenge_context();
        ctx.dpop_scheme = ctx.dpop_algs.is_some()
            && token::scheme(req.authorization) == Some(token::Scheme::DPoP);
        let mut reply = err.reply(&ctx);
        if let Some(o) = req.origin.filter(|o| self.cfg.origin_allowed(o)) {
            for (n, v) in proxy::cors_headers(o) {
                reply.headers.push((n.to_string(), v));
            }
        }
        let mut log = log_line(
            route,
            req,
            if err.status() >= 500 { "error" } else { "deny" },
            reply.status,
        );
        log.reason = Some(err.reason());
        Decision::Reply { reply, log }
    }

    /// Decide an MCP request. Synchronous: anything needing I/O comes back as
    /// [`Decision::NeedKeys`] or [`Decision::Verify`].
    pub fn check(&mut self, req: &RequestInfo<'_>, now: i64) -> Decision {
        let route = router::route(&self.cfg, req.path);
        if route != Route::Mcp || req.method == "OPTIONS" {
            return Decision::NotMcp;
        }
        match self.check_mcp(req, now) {
            Ok(d) => d,
            Err(e) => self.refuse(route, req, &e),
        }
    }

    fn check_mcp(&mut self, req: &RequestInfo<'_>, now: i64) -> Result<Decision, Error> {
        if let Some(o) = req.origin {
            if !self.cfg.origin_allowed(o) {
                return Err(Error::OriginNotAllowed(o.to_string()));
            }
        }
        Route::Mcp.check_method(req.method)?;
        let (scheme, token) = token::credential(req.authorization, self.cfg.dpop.is_some())?;
        if scheme == token::Scheme::Bearer
            && self
                .cfg
                .dpop
                .as_ref()
                .is_some_and(|d| d.mode == crate::dpop::Mode::Required)
        {
            return Err(Error::InvalidDpopToken(
                "this resource takes DPoP-bound tokens only: send `Authorization: DPoP <token>` with a DPoP proof".into(),
            ));
        }
        if self.cfg.scopes.policy.is_some() && req.method == "POST" && req.body == Body::Unread {
            return Ok(Decision::NeedBody(self.cfg.limits.policy_max_body));
        }
        let hash = cache::hash(token);
        if let Some(p) = self.cache.get(&hash, now, self.cfg.tokens.leeway) {
            return self.admit(req, p, &hash, now);
        }
        if self.refused.get(&hash, now, 0).is_some() {
            return Err(bad_signature());
        }
        if let Some(intro) = &self.cfg.introspection {
            if let Some(answer) = self.introspected.get(&hash, now, self.cfg.tokens.leeway) {
                return self.admit(req, answer?, &hash, now);
            }
            if !introspection::looks_like_jwt(token)
                || (intro.jwts
                    && self
                        .introspected
                        .waiting(&hash, now, self.cfg.tokens.leeway))
            {
                return Ok(Decision::Introspect);
            }
        }
        let jwt = token::parse(token, &self.cfg.tokens.algorithms)?;
        if let Some(t) = &self.cfg.tokens.typ {
            token::check_typ(jwt.header.typ.as_deref(), t)?;
        }
        if self.keys_due(now) {
            return self.need_keys(now);
        }
        if !self.has_usable_keys(now) {
            return Err(Error::KeysUnavailable(
                format!(
                    "the JWKS could not be refreshed for longer than JWKS_MAX_STALE_SECONDS ({} s)",
                    self.cfg.upstream.jwks_max_stale
                )
                .into(),
            ));
        }
        let keys = self.keys.set().expect("keys present when not due");
        match keys.lookup(jwt.header.kid.as_deref(), jwt.alg)? {
            Lookup::Found(key) => Ok(Decision::Verify(Box::new(Pending {
                key_id: key.id.clone(),
                alg: jwt.alg,
                input_len: jwt.signing_input.len(),
                signature_len: jwt.signature_b64.len(),
                kid: key.kid.clone(),
                hash,
                claims: token::check_claims(&jwt.claims, key.kid.as_deref(), &self.cfg, now),
            }))),
            Lookup::UnknownKid if self.keys.may_refetch_for_unknown_kid(now) => {
                Ok(Decision::NeedKeys)
            }
            Lookup::UnknownKid => Err(Error::InvalidToken(
                "the token's kid is not among the authorization server's keys".into(),
            )),
        }
    }

    fn need_keys(&self, now: i64) -> Result<Decision, Error> {
        if self.keys.backing_off(now) {
            return Err(Error::KeysUnavailable(
                "the JWKS could not be fetched".into(),
            ));
        }
        Ok(Decision::NeedKeys)
    }

    /// Is a JWKS fetch due ([`jwks::KeyStore::due`])?
    pub fn keys_due(&self, now: i64) -> bool {
        self.keys.due(now)
    }

    /// Record a JWKS answer. On success the token cache loses entries whose key left.
    pub fn install_keys(&mut self, body: Result<&[u8], Error>, now: i64) -> Result<(), Error> {
        let set = self.keys.install(body, now, &self.cfg.tokens.algorithms)?;
        self.cache.retain_keys(set);
        self.refused.retain_keys(set);
        Ok(())
    }

    /// Are any keys held (however old)?
    pub fn has_keys(&self) -> bool {
        self.keys.set().is_some()
    }

    /// Install a JWKS another isolate fetched at `fetched_at` (shared through the Cache
    /// API): its TTL and the refresh interval count from that fetch, not from now.
    pub fn install_shared_keys(&mut self, body: &[u8], fetched_at: i64) -> Result<(), Error> {
        self.install_keys(Ok(body), fetched_at)
    }

    /// Keys are held and not older than their TTL plus `JWKS_MAX_STALE_SECONDS`.
    pub fn has_usable_keys(&self, now: i64) -> bool {
        self.keys.usable(now)
    }

    /// The error for a failed JWKS refresh that leaves no usable keys.
    pub fn keys_failure(&self, e: Error, now: i64) -> Error {
        self.keys.failure(e, now)
    }

    /// A loaded key by its id, with the WebCrypto import parameters for `alg`
    /// (allowed by `ALGORITHMS`), as the JS entry needs them to import it.
    pub fn webcrypto_key(&self, id: &str, alg: &str) -> Option<String> {
        let alg: Algorithm = alg
            .parse()
            .ok()
            .filter(|a| self.cfg.tokens.algorithms.contains(a))?;
        self.keys.webcrypto_key(id, alg)
    }

    /// The key a pending check names.
    pub fn key(&self, pending: &Pending) -> Option<&Key> {
        self.keys.key(&pending.key_id)
    }

    /// The decision for a good signature, made before the glue checks it: the
    /// forward decision when the claims and the scopes allow the request. `None` when
    /// they do not (the refusal comes from [`Authorizer::complete`], after the
    /// signature, so a forged token learns nothing from its claims) or when a JWT
    /// must still be introspected (`INTROSPECT_JWTS`).
    pub fn ahead(&self, req: &RequestInfo<'_>, pending: &Pending, now: i64) -> Option<Decision> {
        if self.cfg.introspection.as_ref().is_some_and(|i| i.jwts) {
            return None;
        }
        let p = pending.claims.as_ref().ok()?;
        // Only a forward: anything else (an exchange to make) is decided after the
        // signature, in `complete`.
        self.admit(req, p, &pending.hash, now)
            .ok()
            .filter(|d| matches!(d, Decision::Forward { .. }))
    }

    /// The signature of a token whose decision was made [`Authorizer::ahead`]
    /// verified: remember the caller.
    pub fn accept(&mut self, pending: Pending, now: i64) {
        if let Ok(p) = pending.claims {
            self.cache
                .insert(pending.hash, p, now, self.cfg.tokens.leeway);
        }
    }

    /// Finish a token whose signature the glue checked, when no decision was made
    /// ahead or the signature failed.
    pub fn complete(
        &mut self,
        req: &RequestInfo<'_>,
        pending: &Pending,
        verified: bool,
        now: i64,
    ) -> Decision {
        let result = if verified {
            pending.claims.clone()
        } else {
            let refusal = Refusal {
                until: now.saturating_add(REFUSAL_SECONDS),
                kid: pending.kid.clone(),
            };
            self.refused.insert(pending.hash, refusal, now, 0);
            Err(bad_signature())
        };
        let revocable = self.cfg.introspection.as_ref().is_some_and(|i| i.jwts);
        match result.and_then(|p| {
            if revocable {
                self.introspected
                    .wait(pending.hash, p, now, self.cfg.tokens.leeway);
                return Ok(Decision::Introspect);
            }
            self.cache
                .insert(pending.hash, p.clone(), now, self.cfg.tokens.leeway);
            self.admit(req, &p, &pending.hash, now)
        }) {
            Ok(d) => d,
            Err(e) => self.refuse(Route::Mcp, req, &e),
        }
    }

    /// Record the introspection endpoint's answer about `token` (the raw bytes, or why
    /// there are none) and say what it means: the caller, or why the token is refused.
    /// Active answers are reused for `INTROSPECTION_CACHE_SECONDS` at most (never past
    /// `exp`), refusals for [`introspection::REFUSED_SECONDS`]; an unusable answer
    /// ([`Error::IntrospectionUnavailable`], 503) is not remembered.
    pub fn install_introspection(
        &mut self,
        token: &str,
        answer: Result<(u16, Vec<u8>), Error>,
        now: i64,
    ) -> Result<Principal, Error> {
        let Some(intro) = &self.cfg.introspection else {
            return Err(Error::IntrospectionUnavailable(
                "INTROSPECTION_URL is not set".into(),
            ));
        };
        let cache_seconds = intro.cache_seconds;
        let hash = cache::hash(token);
        let verdict = answer
            .map_err(|e| match e {
                Error::IntrospectionUnavailable(_) => e,
                other => Error::IntrospectionUnavailable(other.into_fault()),
            })
            .and_then(|(status, body)| introspection::read_answer(status, &body))?;
        let result = match verdict {
            Verdict::Refused(why) => Err(Error::InvalidToken(why.into())),
            // A JWT checked locally keeps its verified claims.
            Verdict::Active(claims) => match self.introspected.take_waiting(&hash) {
                Some(p) => Ok(p),
                None => {
                    let mut claims = *claims;
                    // RFC 7662: `iss` is optional in an answer; when present it must match.
                    claims
                        .iss
                        .get_or_insert_with(|| self.cfg.upstream.issuer.clone());
                    token::check_claims(&claims, None, &self.cfg, now)
                }
            },
        };
        self.introspected
            .record(hash, &result, cache_seconds, now, self.cfg.tokens.leeway);
        result
    }

    /// The decision once the introspection endpoint has answered.
    pub fn finish_introspection(
        &self,
        req: &RequestInfo<'_>,
        result: Result<Principal, Error>,
        now: i64,
    ) -> Decision {
        let hash = cache::hash(token::presented(req.authorization));
        match result.and_then(|p| self.admit(req, &p, &hash, now)) {
            Ok(d) => d,
            Err(e) => self.refuse(Route::Mcp, req, &e),
        }
    }

    fn admit(
        &self,
        req: &RequestInfo<'_>,
        p: &Principal,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Decision, Error> {
        let proof = match &self.cfg.dpop {
            Some(d) => self.dpop_binding(req, p, hash, d, now)?,
            None => None,
        };
        let (needed, filter, mismatch) = crate::needs::needs(&self.cfg, req, p)?;
        let missing = token::missing_scopes(p, &needed, &self.cfg.scopes.hierarchy);
        if !missing.is_empty() {
            return Err(Error::InsufficientScope {
                needed: needed.into_owned(),
                missing,
            });
        }
        if let Some(e) = mismatch {
            return Err(e);
        }
        let mut headers = proxy::identity_headers(p);
        if self.cfg.exchange.is_some() {
            match self.exchanges.get(hash, now) {
                Some(Ok(token)) => headers.push(("authorization", format!("Bearer {token}"))),
                Some(Err(e)) => return Err(e),
                None => return Ok(Decision::Exchange { exp: p.exp }),
            }
        }
        let mut cors = req.origin.map(proxy::cors_headers).unwrap_or_default();
        if let Some((_, key, until)) = &proof {
            self.dpop_seen.borrow_mut().remember(*key, *until, now);
            if let Some(nonce) = self.cfg.dpop.as_ref().and_then(|d| d.nonce(now)) {
                cors.push(("dpop-nonce", nonce));
            }
        }
        let mut log = log_line(Route::Mcp, req, "allow", 0);
        log.subject = p.subject.clone();
        log.client = p.client_id.clone();
        Ok(Decision::Forward {
            target: proxy::target(&self.cfg, req.path, req.query),
            headers,
            cors,
            filter,
            limits: self.limit_keys(p),
            assertion: self.cfg.assertion.as_ref().map(|a| {
                self.assertion_inputs
                    .get(a, p, &self.cfg.upstream.issuer, hash, now)
            }),
            proof: proof.map(|(check, _, _)| Box::new(check)),
            log,
        })
    }

    /// The DPoP rules for a caller's token (`DPOP` on): a bound token (`cnf.jkt`)
    /// needs the `DPoP` scheme and a proof by its key ([`crate::dpop::check`]); an
    /// unbound one the `Bearer` scheme, and only with `DPOP=allowed`. The proof's
    /// signature goes to the entry, with the key under which its `jti` is remembered
    /// once the request is forwarded.
    fn dpop_binding(
        &self,
        req: &RequestInfo<'_>,
        p: &Principal,
        hash: &TokenHash,
        d: &crate::dpop::Settings,
        now: i64,
    ) -> Result<Option<(crate::dpop::Check, TokenHash, i64)>, Error> {
        let scheme = token::scheme(req.authorization);
        match (scheme, p.jkt.as_deref()) {
            (Some(token::Scheme::DPoP), Some(jkt)) => {
                let url = format!("{}{}", self.cfg.public_origin(), req.path);
                let r = crate::dpop::Request {
                    method: req.method,
                    url: &url,
                    token_hash: hash,
                    jkt,
                };
                crate::dpop::check(req.dpop, &r, d, &self.dpop_seen.borrow(), now).map(Some)
            }
            (Some(token::Scheme::DPoP), None) => Err(Error::InvalidDpopToken(
                "the token is not DPoP-bound (it has no cnf.jkt): the authorization server must bind it to the client's key, or send it as Bearer".into(),
            )),
            (_, Some(_)) => Err(Error::InvalidDpopToken(
                "the token is DPoP-bound: send it as `Authorization: DPoP <token>` with a DPoP proof".into(),
            )),
            (_, None) => Ok(None),
        }
    }

    /// The rate-limit keys for a caller: per subject (the client when a token has no
    /// `sub`, as for client_credentials) and per client.
    fn limit_keys(&self, p: &Principal) -> Vec<(&'static str, String)> {
        let mut keys = Vec::new();
        if self.limit_subjects {
            if let Some(who) = p.subject.as_ref().or(p.client_id.as_ref()) {
                keys.push(("MCP_RATE_LIMITER", format!("sub:{who}")));
            }
        }
        if self.limit_clients {
            if let Some(c) = &p.client_id {
                keys.push(("MCP_CLIENT_RATE_LIMITER", format!("client:{c}")));
            }
        }
        keys
    }

    /// The JWKS URL: `JWKS_URL`, else the discovered `jwks_uri`. `None` means
    /// discovery must run first.
    pub fn jwks_url(&self) -> Option<String> {
        self.cfg
            .upstream
            .jwks_url
            .as_ref()
            .map(|u| u.to_string())
            .or_else(|| {
                self.discovery
                    .any()
                    .and_then(|u| u.jwks_uri.as_ref().map(|u| u.to_string()))
            })
    }
}

impl Pending {
    /// What the JS entry needs to check this signature with WebCrypto, given the
    /// handle under which the glue keeps this pending decision, the
    /// `Authorization` header it came from and the decision made [`Authorizer::ahead`]
    /// (its wire form): `{"v": handle, "k": key id, "a": alg, "y": verify params,
    /// "i": [start, end] of the signing input in the header, "s": [start, end] of the
    /// base64url signature, "d": decision}` (`d` only when there is one).
    pub fn to_wire(&self, handle: u32, authorization: &str, ahead: Option<&str>) -> String {
        // The token is a slice of the header: its offset is where the signing input
        // starts (no search over the header on this path, which runs per new token).
        let token = token::presented(Some(authorization));
        let start = if token.is_empty() {
            0
        } else {
            token.as_ptr() as usize - authorization.as_ptr() as usize
        };
        let input_end = start + self.input_len;
        let sig_end = input_end + 1 + self.signature_len;
        let (_, params) = jwks::webcrypto_params(self.alg).unwrap_or_default();
        crate::wire::verify(
            handle,
            &self.key_id,
            self.alg,
            params,
            (start, input_end),
            (input_end + 1, sig_end),
            ahead,
        )
    }
}

impl Decision {
    /// The compact form the JS entry reads: see [`crate::wire`].
    pub fn to_wire(&self, level: LogLevel) -> String {
        crate::wire::decision(self, level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn req<'a>(auth: Option<&'a str>, origin: Option<&'a str>) -> RequestInfo<'a> {
        RequestInfo {
            method: "POST",
            path: "/mcp",
            query: None,
            authorization: auth,
            origin,
            ..Default::default()
        }
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Reply { reply, .. } => reply.status,
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn no_token_is_a_bare_401_challenge() {
        let mut a = Authorizer::new(config());
        let d = a.check(&req(None, None), 1000);
        let Decision::Reply { reply, log } = &d else {
            panic!()
        };
        assert_eq!(reply.status, 401);
        assert!(!reply.header("www-authenticate").unwrap().contains("error="));
        assert_eq!(log.decision, "deny");
    }

    #[test]
    fn bad_origin_is_403_before_anything_else() {
        let mut a = Authorizer::new(config());
        assert_eq!(
            status(&a.check(&req(Some("Bearer x.y.z"), Some("https://evil.example")), 0)),
            403
        );
    }

    #[test]
    fn wrong_method_is_405() {
        let mut a = Authorizer::new(config());
        let mut r = req(None, None);
        r.method = "PUT";
        assert_eq!(status(&a.check(&r, 0)), 405);
    }

    #[test]
    fn garbage_token_is_refused_without_keys() {
        let mut a = Authorizer::new(config());
        let d = a.check(&req(Some("Bearer garbage"), None), 0);
        assert_eq!(status(&d), 401);
        assert!(!a.has_usable_keys(0));
    }

    #[test]
    fn a_well_formed_token_first_needs_keys() {
        let mut a = Authorizer::new(config());
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#);
        let p = URL_SAFE_NO_PAD.encode(r#"{"exp":1}"#);
        let t = format!("Bearer {h}.{p}.c2ln");
        assert!(matches!(
            a.check(&req(Some(&t), None), 0),
            Decision::NeedKeys
        ));
        // A failed fetch with no keys: 503 for a while, not a fetch per request.
        assert!(a
            .install_keys(Err(Error::KeysUnavailable("down".into())), 0)
            .is_err());
        assert_eq!(status(&a.check(&req(Some(&t), None), 1)), 503);
        assert!(matches!(
            a.check(&req(Some(&t), None), 10),
            Decision::NeedKeys
        ));
    }

    #[test]
    fn rate_limit_keys_only_for_bindings_present() {
        let mut a = Authorizer::new(config());
        let p = Principal {
            subject: Some("alice".into()),
            client_id: Some("app".into()),
            scopes: vec!["mcp:tools".into()],
            exp: 10,
            nbf: None,
            kid: None,
            jkt: None,
        };
        assert!(a.limit_keys(&p).is_empty());
        a.limit_subjects = true;
        a.limit_clients = true;
        assert_eq!(
            a.limit_keys(&p),
            vec![
                ("MCP_RATE_LIMITER", "sub:alice".to_string()),
                ("MCP_CLIENT_RATE_LIMITER", "client:app".to_string())
            ]
        );
        // A machine token (no sub) is counted under its client.
        let machine = Principal { subject: None, ..p };
        assert_eq!(a.limit_keys(&machine)[0].1, "sub:app");
        let d = a.admit(&req(None, None), &machine, &[0; 32], 0).unwrap();
        let wire: serde_json::Value = serde_json::from_str(&d.to_wire(LogLevel::Off)).unwrap();
        assert_eq!(wire["q"][1][0], "MCP_CLIENT_RATE_LIMITER");
    }

    #[test]
    fn shared_keys_age_from_their_fetch() {
        let mut a = Authorizer::new(config());
        assert!(!a.has_keys());
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        // Fetched by another isolate 500 s ago: due again 100 s from now, not 600.
        a.install_shared_keys(jwks, 1_000).unwrap();
        assert!(a.has_keys());
        assert!(!a.keys_due(1_500));
        assert!(a.keys_due(1_600));
        assert!(
            a.keys.may_refetch_for_unknown_kid(1_500),
            "an unknown kid may refresh at once"
        );
    }

    #[test]
    fn a_short_jwks_ttl_refreshes_within_it_and_bounds_stale_keys() {
        let mut v = crate::config::tests::base();
        v.extend([("JWKS_CACHE_SECONDS", "2"), ("JWKS_MAX_STALE_SECONDS", "3")]);
        let mut a = Authorizer::new(Config::build(crate::config::tests::vars(&v)).unwrap());
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        a.install_keys(Ok(jwks), 0).unwrap();
        assert!(!a.keys_due(1));
        assert!(a.keys_due(2), "past the TTL");
        let _ = a.install_keys(Err(Error::KeysUnavailable("down".into())), 2);
        assert!(!a.keys_due(3), "one attempt per TTL while failing");
        assert!(a.keys_due(4));
        assert!(a.has_usable_keys(5));
        assert!(!a.has_usable_keys(6));
    }

    #[test]
    fn stale_keys_serve_until_the_limit_then_503() {
        let mut a = Authorizer::new(config());
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        a.install_keys(Ok(jwks), 0).unwrap();
        let limit = a.cfg.upstream.jwks_ttl + a.cfg.upstream.jwks_max_stale;
        assert!(a.has_usable_keys(limit));
        assert!(!a.has_usable_keys(limit + 1));
        // Past the TTL every refresh fails; the old keys hold up to the limit.
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"k"}"#);
        let p = URL_SAFE_NO_PAD.encode(r#"{"exp":9999999999}"#);
        let t = format!("Bearer {h}.{p}.c2ln");
        let at = limit + 10;
        assert!(matches!(
            a.check(&req(Some(&t), None), at),
            Decision::NeedKeys
        ));
        assert!(a
            .install_keys(Err(Error::KeysUnavailable("down".into())), at)
            .is_err());
        let d = a.check(&req(Some(&t), None), at);
        assert_eq!(status(&d), 503);
        let e = a.keys_failure(Error::KeysUnavailable("JWKS unreachable".into()), at);
        assert!(e.to_string().contains("JWKS_MAX_STALE_SECONDS"), "{e}");
        assert!(e.to_string().contains("JWKS unreachable"), "{e}");
    }

    #[test]
    fn wire_format() {
        let a = Authorizer::new(config());
        let d = a.refuse(Route::Mcp, &req(None, None), &Error::MissingToken);
        let v: serde_json::Value = serde_json::from_str(&d.to_wire(LogLevel::Info)).unwrap();
        assert_eq!(v["r"]["status"], 401);
        assert_eq!(v["r"]["headers"][1][0], "www-authenticate");
        assert_eq!(v["l"]["status"], 401);
        let v: serde_json::Value = serde_json::from_str(&d.to_wire(LogLevel::Off)).unwrap();
        assert!(v["l"].is_null());
        assert_eq!(Decision::NeedKeys.to_wire(LogLevel::Info), r#"{"p":1}"#);
    }

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            subject: Some("alice".into()),
            client_id: Some("app".into()),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            exp: i64::MAX,
            nbf: None,
            kid: None,
            jkt: None,
        }
    }

    /// The authorizer for a deployment with a policy, arguments rules and a hierarchy.
    fn with_policy() -> Authorizer {
        let cfg = crate::config::tests::with(&[
            ("SCOPES_SUPPORTED", ""),
            (
                "SCOPE_POLICY",
                r#"{"default": "mcp:tools", "methods": {
                    "tools/call": {"names": {"deploy": {"scopes": "deploy:run", "arguments": {
                        "region": {"match": {"prod-*": "deploy:prod"}, "header": "Region"}}}}},
                    "resources/read": {"names": {"file:///secret/*": "secrets"}}}}"#,
            ),
            (
                "SCOPE_HIERARCHY",
                r#"{"mcp:admin": "mcp:tools deploy:run secrets"}"#,
            ),
        ])
        .unwrap();
        Authorizer::new(cfg)
    }

    /// Admit a POST with this body and these `mcp-*` headers: the status it gets
    /// (200: forwarded), and the filter when forwarded.
    fn post(
        a: &Authorizer,
        scopes: &[&str],
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Option<FilterSpec>) {
        let block: String = headers.iter().map(|(n, v)| format!("{n}\n{v}\n")).collect();
        let mut r = req(Some("Bearer t"), None);
        r.body = Body::Text(body);
        r.mcp = McpHeaders::new(&block);
        match a.admit(&r, &principal(scopes), &[0; 32], 0) {
            Ok(Decision::Forward { filter, .. }) => (200, filter),
            Ok(other) => panic!("{other:?}"),
            Err(e) => (e.status(), None),
        }
    }

    const V: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

    fn deploy(region: &str) -> String {
        format!(
            r#"{{"id":7,"method":"tools/call","params":{{"name":"deploy","arguments":{{"region":{region}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
        )
    }

    #[test]
    fn argument_rules_and_their_headers_are_enforced() {
        let a = with_policy();
        let h = |region: &'static str| {
            [
                V,
                ("mcp-method", "tools/call"),
                ("mcp-name", "deploy"),
                ("mcp-param-region", region),
            ]
        };
        let run = ["mcp:tools", "deploy:run"];
        assert_eq!(post(&a, &run, &deploy(r#""us-1""#), &h("us-1")).0, 200);
        assert_eq!(post(&a, &run, &deploy(r#""prod-1""#), &h("prod-1")).0, 403);
        assert_eq!(
            post(
                &a,
                &["mcp:tools", "deploy:run", "deploy:prod"],
                &deploy(r#""prod-1""#),
                &h("prod-1")
            )
            .0,
            200
        );
        // The header mirrors the argument the rule reads: it must agree, and (declared)
        // must be there in 2026-07-28.
        assert_eq!(post(&a, &run, &deploy(r#""us-1""#), &h("prod-1")).0, 400);
        assert_eq!(post(&a, &run, &deploy(r#""us-1""#), &h("us-1")[..3]).0, 400);
        // Earlier revisions send no Mcp-Param headers.
        let old = r#"{"id":7,"method":"tools/call","params":{"name":"deploy","arguments":{"region":"us-1"}}}"#;
        assert_eq!(post(&a, &run, old, &[]).0, 200);
        let old_prod = old.replace("us-1", "prod-1");
        assert_eq!(post(&a, &run, &old_prod, &[]).0, 403);
        // Arguments that are not an object are invalid params.
        let bad = r#"{"id":7,"method":"tools/call","params":{"name":"deploy","arguments":[1]}}"#;
        assert_eq!(post(&a, &run, bad, &[]).0, 400);
    }

    #[test]
    fn a_broader_scope_satisfies_the_narrower_ones() {
        let a = with_policy();
        let h = [
            V,
            ("mcp-method", "tools/call"),
            ("mcp-name", "deploy"),
            ("mcp-param-region", "us-1"),
        ];
        assert_eq!(
            post(&a, &["mcp:admin"], &deploy(r#""us-1""#), &h).0,
            200,
            "REQUIRED_SCOPES and the policy"
        );
        // Scopes are judged first (on the body's value), the header after.
        assert_eq!(post(&a, &["mcp:admin"], &deploy(r#""prod-1""#), &h).0, 403);
        let all = ["mcp:admin", "deploy:prod"];
        assert_eq!(post(&a, &all, &deploy(r#""prod-1""#), &h).0, 400);
        let h = [
            V,
            ("mcp-method", "tools/call"),
            ("mcp-name", "deploy"),
            ("mcp-param-region", "prod-1"),
        ];
        assert_eq!(
            post(&a, &["mcp:admin"], &deploy(r#""prod-1""#), &h).0,
            403,
            "deploy:prod is not implied"
        );
        // List filtering compares with the implied scopes too, and marks 2026 lists private.
        let list = r#"{"id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let (status, spec) = post(&a, &["mcp:admin"], list, &[V, ("mcp-method", "tools/list")]);
        assert_eq!(status, 200);
        let spec = spec.expect("a list request is filtered");
        assert!(spec.private);
        assert!(spec.granted.iter().any(|s| s == "secrets"));
        // The advertised scopes include the hierarchy's.
        assert!(a.cfg.scopes.supported.iter().any(|s| s == "mcp:admin"));
    }

    #[test]
    fn listen_needs_what_reading_its_resources_needs_and_discover_only_the_required() {
        let a = with_policy();
        let listen = |uris: &str| {
            format!(
                r#"{{"id":1,"method":"subscriptions/listen","params":{{"notifications":{{"resourceSubscriptions":{uris}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
            )
        };
        let h = [V, ("mcp-method", "subscriptions/listen")];
        assert_eq!(
            post(&a, &["mcp:tools"], &listen(r#"["file:///pub/a"]"#), &h).0,
            200
        );
        assert_eq!(
            post(
                &a,
                &["mcp:tools"],
                &listen(r#"["file:///pub/a","file:///secret/b"]"#),
                &h
            )
            .0,
            403
        );
        assert_eq!(
            post(
                &a,
                &["mcp:tools", "secrets"],
                &listen(r#"["file:///secret/b"]"#),
                &h
            )
            .0,
            200
        );
        let discover = r#"{"id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(
            post(
                &a,
                &["mcp:tools"],
                discover,
                &[V, ("mcp-method", "server/discover")]
            )
            .0,
            200
        );
        assert_eq!(
            post(&a, &["mcp:tools"], discover, &[V]).0,
            400,
            "Mcp-Method is required"
        );
        assert_eq!(
            post(&a, &[], discover, &[V, ("mcp-method", "server/discover")]).0,
            403,
            "REQUIRED_SCOPES still hold"
        );
    }
}

#[cfg(test)]
mod dpop_tests {
    //! The DPoP rules in the decision (`DPOP`): which scheme a token needs, the proof
    //! handed to the entry, the challenges, replay and nonces. The proof rules
    //! themselves are `crate::dpop`'s tests.
    use super::*;
    use crate::config::tests::with;
    use crate::dpop::tests::{proof_with, ED_JKT, NOW, TOKEN};

    fn authorizer(extra: &[(&'static str, &'static str)]) -> Authorizer {
        Authorizer::new(with(extra).unwrap())
    }

    fn bound(jkt: Option<&str>) -> Principal {
        Principal {
            subject: Some("alice".into()),
            client_id: Some("app".into()),
            scopes: vec!["mcp:tools".into()],
            exp: NOW + 600,
            nbf: None,
            kid: None,
            jkt: jkt.map(str::to_string),
        }
    }

    /// The decision for a request presenting the test token with `scheme` and `proof`
    /// for a caller bound to `jkt`.
    fn decide(a: &Authorizer, scheme: &str, proof: Option<&str>, jkt: Option<&str>) -> Decision {
        let auth = format!("{scheme} {TOKEN}");
        let r = RequestInfo {
            method: "POST",
            path: "/mcp",
            authorization: Some(&auth),
            dpop: proof,
            ..Default::default()
        };
        match a.admit(&r, &bound(jkt), &cache::hash(TOKEN), NOW) {
            Ok(d) => d,
            Err(e) => a.refuse(Route::Mcp, &r, &e),
        }
    }

    fn challenge(d: &Decision) -> (u16, String) {
        match d {
            Decision::Reply { reply, .. } => (
                reply.status,
                reply
                    .headers
                    .iter()
                    .filter(|(n, _)| n == "www-authenticate")
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn a_bound_token_needs_the_dpop_scheme_and_a_proof_by_its_key() {
        let a = authorizer(&[("DPOP", "allowed")]);
        let proof = proof_with(|_, _| {});
        let d = decide(&a, "DPoP", Some(&proof), Some(ED_JKT));
        let Decision::Forward {
            proof: Some(check), ..
        } = &d
        else {
            panic!("{d:?}")
        };
        assert_eq!(check.import, r#"{"name":"Ed25519"}"#);
        // Forwarded: the same proof again is a replay.
        let (status, c) = challenge(&decide(&a, "DPoP", Some(&proof), Some(ED_JKT)));
        assert_eq!(status, 401);
        assert!(
            c.starts_with(
                r#"DPoP error="invalid_dpop_proof", error_description="the proof was used before"#
            ),
            "{c}"
        );
        assert!(c.ends_with(r#"algs="ES256 EdDSA RS256 PS256""#), "{c}");
        // As Bearer, or with no proof, or for another key.
        let (status, c) = challenge(&decide(&a, "Bearer", None, Some(ED_JKT)));
        assert_eq!(status, 401);
        assert!(
            c.starts_with(
                r#"DPoP error="invalid_token", error_description="the token is DPoP-bound"#
            ),
            "{c}"
        );
        let (_, c) = challenge(&decide(&a, "DPoP", None, Some(ED_JKT)));
        assert!(
            c.contains("invalid_dpop_proof") && c.contains("no DPoP proof"),
            "{c}"
        );
        let fresh = proof_with(|_, c| c["jti"] = serde_json::json!("another"));
        let (_, c) = challenge(&decide(&a, "DPoP", Some(&fresh), Some("other-key")));
        assert!(
            c.starts_with(r#"DPoP error="invalid_token""#) && c.contains("cnf.jkt"),
            "{c}"
        );
    }

    #[test]
    fn unbound_tokens_stay_bearer_tokens_unless_dpop_is_required() {
        let a = authorizer(&[("DPOP", "allowed")]);
        let d = decide(&a, "Bearer", None, None);
        assert!(matches!(d, Decision::Forward { proof: None, .. }), "{d:?}");
        let (status, c) = challenge(&decide(&a, "DPoP", Some(&proof_with(|_, _| {})), None));
        assert_eq!(status, 401);
        assert!(c.contains("not DPoP-bound"), "{c}");
        let mut required = authorizer(&[("DPOP", "required")]);
        let auth = format!("Bearer {TOKEN}");
        let r = RequestInfo {
            method: "POST",
            path: "/mcp",
            authorization: Some(&auth),
            ..Default::default()
        };
        let (status, c) = challenge(&required.check(&r, NOW));
        assert_eq!(status, 401);
        assert!(c.starts_with(r#"DPoP error="invalid_token", error_description="this resource takes DPoP-bound tokens only"#), "{c}");
    }

    #[test]
    fn challenges_name_both_schemes_while_bearer_is_taken() {
        let no_token = |a: &mut Authorizer| {
            let r = RequestInfo {
                method: "POST",
                path: "/mcp",
                ..Default::default()
            };
            challenge(&a.check(&r, NOW))
        };
        let (status, c) = no_token(&mut authorizer(&[("DPOP", "allowed")]));
        assert_eq!(status, 401);
        let rm = r#"resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            c,
            format!(
                r#"Bearer scope="mcp:tools", {rm} | DPoP scope="mcp:tools", {rm}, algs="ES256 EdDSA RS256 PS256""#
            )
        );
        let (_, c) = no_token(&mut authorizer(&[
            ("DPOP", "required"),
            ("DPOP_ALGORITHMS", "ES256"),
        ]));
        assert_eq!(c, format!(r#"DPoP scope="mcp:tools", {rm}, algs="ES256""#));
        let mut required = authorizer(&[("DPOP", "required")]);
        let r = RequestInfo {
            method: "POST",
            path: "/mcp",
            ..Default::default()
        };
        let Decision::Reply { reply, .. } = required.check(&r, NOW) else {
            panic!()
        };
        assert!(reply.body.contains("DPoP-bound token"), "{}", reply.body);
        let (_, c) = no_token(&mut authorizer(&[]));
        assert_eq!(
            c,
            format!(r#"Bearer scope="mcp:tools", {rm}"#),
            "DPoP off: as before"
        );
        // Insufficient scope, for a DPoP request: a DPoP challenge.
        let a = authorizer(&[("DPOP", "allowed"), ("REQUIRED_SCOPES", "mcp:admin")]);
        let (status, c) = challenge(&decide(
            &a,
            "DPoP",
            Some(&proof_with(|_, _| {})),
            Some(ED_JKT),
        ));
        assert_eq!(status, 403);
        assert!(c.starts_with(r#"DPoP error="insufficient_scope""#), "{c}");
    }

    #[test]
    fn with_nonces_a_proof_needs_a_current_one_and_forwards_hand_out_the_next() {
        let a = authorizer(&[
            ("DPOP", "allowed"),
            ("DPOP_NONCE_SECRET", "0123456789abcdef0123456789abcdef"),
        ]);
        let d = decide(&a, "DPoP", Some(&proof_with(|_, _| {})), Some(ED_JKT));
        let Decision::Reply { reply, .. } = &d else {
            panic!("{d:?}")
        };
        assert_eq!(reply.status, 401);
        let nonce = reply.header("dpop-nonce").unwrap().to_string();
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .starts_with(r#"DPoP error="use_dpop_nonce""#));
        let with_nonce = proof_with(|_, c| c["nonce"] = serde_json::json!(nonce));
        let d = decide(&a, "DPoP", Some(&with_nonce), Some(ED_JKT));
        let Decision::Forward { cors, .. } = &d else {
            panic!("{d:?}")
        };
        assert!(cors.contains(&("dpop-nonce", nonce)), "{cors:?}");
    }

    #[test]
    fn prm_says_what_the_resource_takes() {
        let prm = |v: &[(&'static str, &'static str)]| {
            crate::metadata::protected_resource(&with(v).unwrap())
        };
        let off = prm(&[]);
        assert!(off.get("dpop_signing_alg_values_supported").is_none());
        let allowed = prm(&[("DPOP", "allowed")]);
        assert_eq!(
            allowed["dpop_signing_alg_values_supported"],
            serde_json::json!(["ES256", "EdDSA", "RS256", "PS256"])
        );
        assert!(allowed.get("dpop_bound_access_tokens_required").is_none());
        assert_eq!(
            prm(&[("DPOP", "required")])["dpop_bound_access_tokens_required"],
            true
        );
    }
}
