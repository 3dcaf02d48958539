//! The table of bindings: every text binding the worker reads, whether it is
//! required, its default, and what it means. It drives the required-binding check and
//! the defaults of [`Config::build`](super::Config::build), the doctor's misspelling
//! check, and a test that keeps docs/configuration.md to it.

/// A text binding the worker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub name: &'static str,
    pub required: bool,
    /// The value used when the binding is unset, parsed as a set value would be.
    /// `None`: no default, or one that depends on other bindings (said in `meaning`).
    pub default: Option<&'static str>,
    /// Native builds only (the doctor, the tests): the wasm carries no prose.
    #[cfg(not(target_arch = "wasm32"))]
    pub meaning: &'static str,
}

#[allow(unused_variables)]
const fn b(
    name: &'static str,
    required: bool,
    default: Option<&'static str>,
    meaning: &'static str,
) -> Binding {
    Binding {
        name,
        required,
        default,
        #[cfg(not(target_arch = "wasm32"))]
        meaning,
    }
}

/// Every binding the worker reads (the doctor flags any other name as a likely typo).
#[rustfmt::skip]
pub const TABLE: &[Binding] = &[
    b("ORIGIN_URL", true, None, "base URL of the MCP origin"),
    b("RESOURCE_URL", true, None, "canonical public URL of the protected MCP endpoint"),
    b("ISSUER", true, None, "the authorization server's issuer, exactly as in tokens' `iss`"),
    b("AS_URL", false, None, "where the worker reaches the authorization server (default `ISSUER`)"),
    b("AS_PASSTHROUGH", false, None, "path prefixes forwarded verbatim to `AS_URL`"),
    b("JWKS_URL", false, None, "overrides the discovered `jwks_uri`"),
    b("REGISTRATION_URL", false, None, "overrides the discovered upstream `registration_endpoint`"),
    b("AUDIENCE", false, None, "accepted `aud` values (default `RESOURCE_URL`)"),
    b("SCOPES_SUPPORTED", false, None, "scopes advertised in PRM"),
    b("REQUIRED_SCOPES", false, None, "scopes every MCP request needs"),
    b("ALLOWED_ORIGINS", false, None, "browser origins allowed on the MCP endpoint (`*` for any)"),
    b("ALGORITHMS", false, Some("RS256 ES256 PS256 EdDSA"), "accepted JWS algorithms (asymmetric only)"),
    b("CLOCK_LEEWAY_SECONDS", false, Some("60"), "leeway on `exp`/`nbf` (0 to 300)"),
    b("RESOURCE_NAME", false, None, "PRM `resource_name`"),
    b("RESOURCE_DOCUMENTATION", false, None, "PRM `resource_documentation`"),
    b("REGISTRATION_PATH", false, Some("/register"), "path of the worker's registration endpoint"),
    b("LOG_LEVEL", false, Some("info"), "`info` (a line per request), `warn` (refusals and failures), `off`"),
    b("SCOPE_POLICY", false, None, "JSON: scopes per MCP method and tool/prompt/resource name (see [`crate::policy`])"),
    b("SCOPE_HIERARCHY", false, None, "JSON: broader scopes and the narrower ones they imply (see [`crate::policy::Hierarchy`])"),
    b("POLICY_MAX_BODY_BYTES", false, Some("1048576"), "largest POST body the policy inspects (1 to 16 MiB); larger is 413"),
    b("ORIGIN_TIMEOUT_SECONDS", false, Some("100"), "how long to wait for the origin's response headers (1 to 600); then 504"),
    b("TOKEN_TYP", false, None, "required JWT header `typ` (e.g. `at+jwt`, RFC 9068); unset: any"),
    b("JWKS_MAX_STALE_SECONDS", false, Some("86400"), "how long keys stay in use when the JWKS cannot be refreshed (0 to 604800); then 503"),
    b("JWKS_CACHE_SECONDS", false, Some("600"), "how long a fetched JWKS is used before it is fetched again (1 to 86400)"),
    b("INTROSPECTION_URL", false, None, "RFC 7662 endpoint: tokens that are not JWTs are checked there (see [`Introspection`](super::Introspection))"),
    b("INTROSPECTION_CLIENT_ID", false, None, "HTTP Basic credentials for the introspection endpoint"),
    b("INTROSPECTION_CLIENT_SECRET", false, None, "HTTP Basic credentials for the introspection endpoint"),
    b("INTROSPECTION_BEARER_TOKEN", false, None, "or a bearer API key for it (Ory Network)"),
    b("INTROSPECT_JWTS", false, Some("false"), "`true`: JWTs, once valid locally, must also be active at the endpoint (revocation)"),
    b("INTROSPECTION_CACHE_SECONDS", false, Some("60"), "longest an active answer is reused (0 to 3600; never past the token's `exp`)"),
    b("INTROSPECTION_TIMEOUT_SECONDS", false, Some("5"), "how long the endpoint may take (1 to 30); then 503"),
    b("AS_FLAVOR", false, Some("generic"), "`generic` or `hydra`: the Ory Hydra adapter (see [`Flavor`](super::Flavor))"),
    b("CIMD", false, Some("false"), "`true`: accept Client ID Metadata Documents (see [`crate::cimd`]); needs `AS_PASSTHROUGH` and a KV namespace bound as `CIMD_KV`"),
    b("CIMD_ALLOW_LOOPBACK", false, Some("false"), "`true` (development only): documents may live on loopback hosts, over http too"),
    b("CIMD_TIMEOUT_SECONDS", false, Some("5"), "how long a document's host may take (1 to 30)"),
    b("CIMD_CACHE_SECONDS", false, Some("3600"), "longest a document is reused, whatever its `Cache-Control` says (0 to 86400)"),
    b("STRIP_IDENTITY_HEADERS", false, Some("X-Forwarded-User X-Forwarded-Email X-Forwarded-Preferred-Username X-Forwarded-Groups X-Forwarded-Access-Token Remote-User X-Remote-User"), "identity headers of other authenticating proxies (oauth2-proxy, Pomerium, Authelia, `REMOTE_USER`), never forwarded from a client: an origin written for such a proxy would trust them (`none` forwards them)"),
    b("ASSERTION_KEY", false, None, "private JWK (ES256 or EdDSA): the identity assertion signed for the origin (see [`crate::assertion`])"),
    b("ASSERTION_SECOND_KEY", false, None, "a second private JWK, published but never signing (rotation)"),
    b("ASSERTION_AUDIENCE", false, None, "the assertion's `aud` (default the origin of `ORIGIN_URL`)"),
    b("ASSERTION_TTL_SECONDS", false, Some("300"), "the assertion's lifetime (1 to 3600; never past the token's `exp`)"),
    b("ASSERTION_HEADER", false, Some("X-Auth-Assertion"), "`X-Auth-…` or `Authorization` (as `Bearer`): the header the origin gets it in"),
    b("TOKEN_EXCHANGE", false, Some("false"), "`true`: exchange each caller's token for one issued to the origin (RFC 8693, see [`crate::exchange`])"),
    b("TOKEN_EXCHANGE_URL", false, None, "the token endpoint for exchanges (default the discovered `token_endpoint`)"),
    b("TOKEN_EXCHANGE_CLIENT_ID", false, None, "the worker's client at the authorization server (secret binding with the next)"),
    b("TOKEN_EXCHANGE_CLIENT_SECRET", false, None, "its secret (HTTP Basic)"),
    b("TOKEN_EXCHANGE_AUDIENCE", false, None, "the origin's name at the server (`audience`)"),
    b("TOKEN_EXCHANGE_RESOURCE", false, None, "the origin's URL (`resource`, RFC 8707)"),
    b("TOKEN_EXCHANGE_SCOPE", false, None, "the scope asked for (default none: the server decides)"),
    b("TOKEN_EXCHANGE_TIMEOUT_SECONDS", false, Some("5"), "how long the token endpoint may take (1 to 30); then 503"),
    b("DPOP", false, Some("off"), "`off`, `allowed` (DPoP-bound tokens need proofs) or `required` (every token bound; see [`crate::dpop`])"),
    b("DPOP_ALGORITHMS", false, Some("ES256 EdDSA RS256 PS256"), "proof algorithms accepted (asymmetric only)"),
    b("DPOP_PROOF_WINDOW_SECONDS", false, Some("60"), "how far a proof's `iat` may be from now (1 to 300)"),
    b("DPOP_NONCE_SECRET", false, None, "a secret of 32+ characters: server nonces, the same in every isolate"),
    b("DPOP_NONCE_SECONDS", false, Some("60"), "how long a nonce period lasts (10 to 3600); a nonce is good for two"),
];

/// Is `name` one of the worker's bindings?
pub fn is_binding(name: &str) -> bool {
    TABLE.iter().any(|b| b.name == name)
}

/// The table's default for a binding.
pub fn default_of(name: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|b| b.name == name)
        .and_then(|b| b.default)
}
