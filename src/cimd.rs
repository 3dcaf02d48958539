//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, CIMD)
//! in front of an authorization server that only knows registered clients.
//!
//! With `CIMD=true` a client may use an https URL as its `client_id`; the URL serves a
//! JSON document describing the client. The upstream never sees the URL: the worker
//! maps it to an ordinary upstream client that it registers once (RFC 7591), and
//! rewrites `client_id` on the requests that pass through it (the single-host layout,
//! `AS_PASSTHROUGH`).
//!
//! 1. An authorization request (`response_type` + a URL `client_id`):
//!    * [`check_client_id`]: https, a path, no query, fragment or credentials, normal
//!      form (no dot segments), and a public host: loopback only with
//!      `CIMD_ALLOW_LOOPBACK` (then http too), private, link-local and reserved
//!      addresses never. Names that resolve to private addresses are left to the
//!      platform (Workers cannot reach private networks).
//!    * the glue fetches the document: no redirects, `CIMD_TIMEOUT_SECONDS`, at most
//!      [`MAX_DOCUMENT_BYTES`]; kept in the isolate for [`cache_seconds`] (its
//!      `Cache-Control`, at most `CIMD_CACHE_SECONDS`).
//!    * [`parse_document`]: 200, `application/json` (or `application/*+json`), a JSON
//!      object whose `client_id` is the URL byte for byte, usable `redirect_uris`.
//!      Failing any of these, the worker cannot trust a redirect URI: the answer is a
//!      plain 400 JSON error to the browser. The request's `redirect_uri` must be one
//!      of the document's ([`check_redirect`]), or the same plain error.
//!    * the rest of the document ([`Document::problem`]: `client_name`, no shared
//!      secrets, `token_endpoint_auth_method` `none`, grant and response types) is
//!      checked next; a failure now goes back to the (trusted) redirect URI as an
//!      RFC 6749 §4.1.2.1 error with `state` and `iss` ([`redirect_error`]).
//!    * the upstream client: the records in Workers KV under [`kv_prefix`] (one per
//!      registration, see below); [`for_authorization`] picks the earliest record
//!      registered with the document's current [`fingerprint`] (redirect URIs and grant
//!      types). None: the glue registers [`Document::registration`] (through the Hydra
//!      adapter and scope widening like any registration), writes a record, lists
//!      again and uses the earliest. A changed fingerprint registers a new client.
//!    * the request goes upstream with `client_id` replaced ([`replace_client_id`]).
//! 2. A form POST (token, revocation) with a URL `client_id`: [`for_token`] orders the
//!    records (the newest registration's group first, earliest within it) and the
//!    glue tries at most [`MAX_TRIES`] of them while the upstream answers
//!    `invalid_grant` ([`is_invalid_grant`]): a code or refresh token issued to a
//!    client registered concurrently elsewhere, or before the document changed, still
//!    redeems. No record: 401 `invalid_client`.
//!
//! Records are written once and never updated, each under its own key, because KV has
//! no compare-and-swap: two isolates registering the same document at once both keep
//! their record, every isolate picks the same earliest one, and a flow started with
//! the other still finishes through the retry. Within an isolate, registrations are
//! single-flight per document.
//!
//! Only public clients are accepted (`none`); the worker registers them as public
//! clients upstream, and refuses an upstream that answers with a secret, so no
//! upstream secret exists to leak.

use crate::cache::hex;
use crate::config::Config;
use crate::error::{Error, Fault};
use crate::registration;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Largest document the worker reads (the draft suggests 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Longest accepted `client_id` URL.
pub const MAX_URL_BYTES: usize = 2048;
/// A document's lifetime in the isolate when it sends no `Cache-Control`.
pub const DEFAULT_CACHE_SECONDS: i64 = 300;
/// Upstream clients tried for one token request.
pub const MAX_TRIES: usize = 3;
/// Documents and record lists kept per isolate.
const MAX_REMEMBERED: usize = 256;

/// Whether a `client_id` names a metadata document (an http(s) URL).
pub fn is_document_url(client_id: &str) -> bool {
    let lower = |n: usize| client_id.get(..n).map(str::to_ascii_lowercase);
    lower(8).as_deref() == Some("https://") || lower(7).as_deref() == Some("http://")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Public,
    Loopback,
    /// Private, link-local, shared, reserved or otherwise not public.
    Private,
}

/// An IPv4 address by the IANA IPv4 Special-Purpose Address Registry (RFC 6890 and
/// its updates): only globally reachable unicast is public. Each row is named; the
/// few globally reachable special-purpose blocks (AS112, AMT) are public anyway.
fn ipv4_kind(ip: Ipv4Addr) -> HostKind {
    let [a, b, c, _] = ip.octets();
    if a == 127 {
        return HostKind::Loopback; // 127.0.0.0/8
    }
    let special = a == 0 // 0.0.0.0/8, "this network"
        || a == 10 // 10.0.0.0/8, private
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10, shared (carrier-grade NAT)
        || (a == 169 && b == 254) // 169.254.0.0/16, link-local
        || (a == 172 && (b & 0xf0) == 16) // 172.16.0.0/12, private
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24, IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // 192.0.2.0/24, documentation
        || (a == 192 && b == 88 && c == 99) // 192.88.99.0/24, 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168) // 192.168.0.0/16, private
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || (a == 198 && b == 51 && c == 100) // 198.51.100.0/24, documentation
        || (a == 203 && b == 0 && c == 113) // 203.0.113.0/24, documentation
        || (a & 0xf0) == 224 // 224.0.0.0/4, multicast
        || a >= 240; // 240.0.0.0/4 reserved, 255.255.255.255 broadcast
    if special {
        HostKind::Private
    } else {
        HostKind::Public
    }
}

/// The IPv4 address an IPv6 address carries, for every form that embeds one:
/// IPv4-mapped `::ffff:0:0/96`, SIIT IPv4-translated `::ffff:0:0:0/96` (RFC 2765),
/// NAT64 `64:ff9b::/96` (RFC 6052) and 6to4 `2002::/16` (RFC 3056).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(v4(hi, lo)),
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(v4(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// An IPv6 address by the IANA IPv6 Special-Purpose Address Registry and the IPv6
/// address space registry: public only inside global unicast `2000::/3`, outside
/// its special-purpose blocks; an embedded IPv4 address is judged as IPv4 (and is
/// never loopback: a 6to4 or NAT64 address is routed, not local).
fn ipv6_kind(ip: Ipv6Addr) -> HostKind {
    if ip.is_loopback() {
        return HostKind::Loopback; // ::1/128
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return match ipv4_kind(v4) {
            HostKind::Public => HostKind::Public,
            _ => HostKind::Private,
        };
    }
    let s = ip.segments();
    // Outside 2000::/3: unspecified, IPv4-compatible, discard-only 100::/64, dummy
    // 100:0:0:1::/64, local-use NAT64 64:ff9b:1::/48, SRv6 5f00::/16, unique local
    // fc00::/7, site-local fec0::/10 (deprecated), link-local fe80::/10, multicast
    // ff00::/8, and everything unassigned.
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let special = !global_unicast
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23, IETF protocol assignments (Teredo 2001::/32, benchmarking, ORCHID)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32, documentation
        || (s[0] == 0x3fff && s[1] < 0x1000); // 3fff::/20, documentation
    if special {
        HostKind::Private
    } else {
        HostKind::Public
    }
}

/// What kind of host a URL names. Names: `localhost` and `*.localhost` are loopback;
/// single labels and `.local`, `.internal`, `.lan`, `.home.arpa`, `.localdomain` are
/// private; anything else is left to DNS (and the platform).
pub fn host_kind(url: &Url) -> HostKind {
    match url.host() {
        Some(Host::Ipv4(ip)) => ipv4_kind(ip),
        Some(Host::Ipv6(ip)) => ipv6_kind(ip),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                HostKind::Loopback
            } else if !d.contains('.')
                || [".local", ".internal", ".lan", ".home.arpa", ".localdomain"]
                    .iter()
                    .any(|s| d.ends_with(s))
            {
                HostKind::Private
            } else {
                HostKind::Public
            }
        }
        None => HostKind::Private,
    }
}

/// Check a `client_id` URL before anything is fetched from it.
pub fn check_client_id(raw: &str, allow_loopback: bool) -> Result<Url, String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("is longer than {MAX_URL_BYTES} bytes"));
    }
    let url = Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    if url.query().is_some() {
        return Err("must not have a query".into());
    }
    if url.path() == "/" {
        return Err("must have a path (e.g. https://client.example/oauth/client.json)".into());
    }
    let url = match (url.scheme(), host_kind(&url)) {
        (_, HostKind::Private) => return Err(
            "names a private, link-local or reserved host; documents are fetched from public hosts only"
                .into(),
        ),
        (_, HostKind::Loopback) if !allow_loopback => return Err(
            "names a loopback host; CIMD_ALLOW_LOOPBACK=true allows that in development".into(),
        ),
        ("https", _) | ("http", HostKind::Loopback) => url,
        _ => return Err("must use https".into()),
    };
    if url.as_str() != raw {
        return Err(format!(
            "must be in normal form (lower-case scheme and host, no default port, no dot segments): {url}"
        ));
    }
    Ok(url)
}

/// A fetched document, checked enough to trust its redirect URIs.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// The first reason the client cannot be authorized, if any: reported to one of
    /// its redirect URIs.
    pub problem: Option<String>,
    /// What the upstream registration endpoint gets for this client.
    pub registration: Map<String, Value>,
}

/// Members copied from the document into the upstream registration, when strings.
const COPIED: &[&str] = &[
    "client_name",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
    "scope",
];

fn strings(map: &Map<String, Value>, name: &str, default: &str) -> Result<Vec<String>, String> {
    match map.get(name) {
        None => Ok(vec![default.to_string()]),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{name} must be an array of strings")),
        Some(_) => Err(format!("{name} must be a non-empty array of strings")),
    }
}

/// Read a fetched document: `Err` when nothing in it can be trusted (see the module).
pub fn parse_document(
    client_id: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Document, String> {
    if (300..400).contains(&status) {
        return Err(format!(
            "answered {status} (a redirect); redirects are not followed"
        ));
    }
    if status != 200 {
        return Err(format!("answered {status}, not 200"));
    }
    let media = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media != "application/json"
        && !(media.starts_with("application/") && media.ends_with("+json"))
    {
        return Err(format!(
            "has content type {media:?}; application/json is required"
        ));
    }
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("is larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("is not a JSON object".into()),
        Err(e) => return Err(format!("is not JSON ({e})")),
    };
    match map.get("client_id").and_then(Value::as_str) {
        Some(id) if id == client_id => {}
        Some(id) => return Err(format!("names client_id {id:?}, not its own URL")),
        None => return Err("has no client_id".into()),
    }
    let redirect_uris = match map.get("redirect_uris") {
        None => return Err("has no redirect_uris".into()),
        Some(_) => strings(&map, "redirect_uris", "")?,
    };
    for uri in &redirect_uris {
        registration::check_redirect_uri(uri).map_err(|e| format!("redirect_uris: {e}"))?;
    }

    let mut problem = None;
    let mut note = |p: String| {
        problem.get_or_insert(p);
    };
    let grant_types = strings(&map, "grant_types", "authorization_code").unwrap_or_else(|e| {
        note(e);
        Vec::new()
    });
    if let Some(g) = grant_types
        .iter()
        .find(|g| *g != "authorization_code" && *g != "refresh_token")
    {
        note(format!(
            "grant type {g:?} is not supported (authorization_code, refresh_token)"
        ));
    } else if !grant_types.iter().any(|g| g == "authorization_code") {
        note("grant_types must include authorization_code".into());
    }
    match strings(&map, "response_types", "code") {
        Ok(r) if r.iter().all(|t| t == "code") => {}
        Ok(_) => note("response_types must be [\"code\"]".into()),
        Err(e) => note(e),
    }
    match map.get("client_name") {
        Some(Value::String(n)) if !n.trim().is_empty() => {}
        _ => note("has no client_name".into()),
    }
    if map.contains_key("client_secret") || map.contains_key("client_secret_expires_at") {
        note("carries a client secret; a metadata document cannot hold shared secrets".into());
    }
    match map.get("token_endpoint_auth_method") {
        None => {}
        Some(Value::String(m)) if m == "none" => {}
        Some(Value::String(m)) if m.starts_with("client_secret") => note(format!(
            "uses token_endpoint_auth_method {m:?}; a metadata document cannot hold shared secrets"
        )),
        Some(m) => note(format!(
            "uses token_endpoint_auth_method {m}; this worker accepts public clients (none) only"
        )),
    }

    let mut reg = Map::new();
    for name in COPIED {
        if let Some(Value::String(s)) = map.get(*name) {
            reg.insert((*name).into(), json!(s));
        }
    }
    if let Some(Value::Array(c)) = map.get("contacts") {
        if c.iter().all(Value::is_string) {
            reg.insert("contacts".into(), json!(c));
        }
    }
    reg.insert("redirect_uris".into(), json!(redirect_uris));
    reg.insert("grant_types".into(), json!(grant_types));
    reg.insert("response_types".into(), json!(["code"]));
    reg.insert("token_endpoint_auth_method".into(), json!("none"));
    Ok(Document {
        client_id: client_id.to_string(),
        redirect_uris,
        grant_types,
        problem,
        registration: reg,
    })
}

/// The registration body for the upstream: the document's client, then what the
/// Hydra adapter and a scope policy add to any registration.
pub fn registration_body(cfg: &Config, doc: &Document) -> Vec<u8> {
    registration::outgoing(cfg, &doc.registration)
}

/// The upstream client id from a registration answer. The client must be public:
/// an upstream that issued a secret is refused (the secret is never kept or shown).
pub fn read_registration(status: u16, body: &[u8]) -> Result<String, Error> {
    if !(200..300).contains(&status) {
        let e = registration::upstream_error(status, body);
        return Err(Error::Upstream(
            Fault::new(format!(
                "the registration endpoint refused the client's registration ({status})"
            ))
            .detail(e.to_string()),
        ));
    }
    let answer: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| Error::Upstream("the registration answer is not a JSON object".into()))?;
    let method = answer
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str);
    let secret = answer
        .get("client_secret")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if secret || method.is_some_and(|m| m != "none") {
        return Err(Error::Upstream(
            "the authorization server registered a confidential client; allow token_endpoint_auth_method none for dynamically registered clients".into(),
        ));
    }
    match answer.get("client_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(Error::Upstream(
            "the registration answer has no client_id".into(),
        )),
    }
}

/// How long a fetched document is reused: its `Cache-Control` (`no-store` and
/// `no-cache` mean not at all, `max-age` as given), [`DEFAULT_CACHE_SECONDS`]
/// without one, never past `max`.
pub fn cache_seconds(cache_control: Option<&str>, max: i64) -> i64 {
    let Some(cc) = cache_control else {
        return DEFAULT_CACHE_SECONDS.min(max);
    };
    let mut age = None;
    for directive in cc.split(',') {
        let d = directive.trim().to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return 0;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<i64>().ok();
        }
    }
    age.unwrap_or(DEFAULT_CACHE_SECONDS).clamp(0, max)
}

/// The request's redirect URI, checked against the document: the one given must be
/// listed exactly; none given is accepted only when the document lists one.
pub fn check_redirect(doc: &Document, given: Option<&str>) -> Result<String, String> {
    match given {
        Some(r) if doc.redirect_uris.iter().any(|u| u == r) => Ok(r.to_string()),
        Some(r) => Err(format!(
            "redirect_uri {r:?} is not one of the client's metadata document's redirect_uris"
        )),
        None if doc.redirect_uris.len() == 1 => Ok(doc.redirect_uris[0].clone()),
        None => {
            Err("redirect_uri is required: the client's metadata document lists several".into())
        }
    }
}

/// The redirect URI's location for an RFC 6749 §4.1.2.1 error (with RFC 9207 `iss`).
pub fn redirect_error(
    redirect_uri: &str,
    state: Option<&str>,
    issuer: &str,
    error: &str,
    description: &str,
) -> String {
    let mut url = match Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return redirect_uri.to_string(),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error);
        q.append_pair("error_description", description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    url.to_string()
}

/// A plain error for the browser (400): nothing the worker could trust names a
/// redirect URI.
pub fn refuse(error: &'static str, description: impl Into<String>) -> Error {
    Error::OAuth {
        error,
        description: description.into(),
        status: 400,
        location: None,
    }
}

/// A token (or other form) request naming a document no client was registered for.
pub fn unknown_client(url: &str) -> Error {
    Error::OAuth {
        error: "invalid_client",
        description: format!(
            "no client is registered for {url}; start with an authorization request"
        ),
        status: 401,
        location: None,
    }
}

/// An error sent to the client's (checked) redirect URI.
pub fn to_client(
    req: &AuthorizationRequest,
    redirect_uri: &str,
    issuer: &str,
    error: &'static str,
    description: impl Into<String>,
) -> Error {
    let description = description.into();
    Error::OAuth {
        error,
        location: Some(redirect_error(
            redirect_uri,
            req.state.as_deref(),
            issuer,
            error,
            &description,
        )),
        description,
        status: 302,
    }
}

/// The parameters of an authorization request naming a document URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// A query's value for `name` (the first one).
pub fn form_value(form: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(form.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// `Some` for an authorization request (`response_type`) whose `client_id` is a URL.
pub fn authorization_request(query: &str) -> Option<AuthorizationRequest> {
    form_value(query, "response_type")?;
    let client_id = form_value(query, "client_id").filter(|c| is_document_url(c))?;
    Some(AuthorizationRequest {
        client_id,
        redirect_uri: form_value(query, "redirect_uri"),
        state: form_value(query, "state"),
    })
}

/// The form (query or body) with every `client_id` replaced by `id`; every other
/// parameter keeps its exact bytes.
pub fn replace_client_id(form: &str, id: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    form.split('&')
        .map(|part| {
            let name = part.split('=').next().unwrap_or_default();
            let decoded: String = url::form_urlencoded::parse(name.as_bytes())
                .map(|(n, _)| n.into_owned())
                .collect();
            if decoded == "client_id" {
                format!("client_id={encoded}")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// What decides whether a registered client still fits the document: a new
/// fingerprint means a new registration.
pub fn fingerprint(doc: &Document) -> String {
    let mut uris = doc.redirect_uris.clone();
    uris.sort();
    uris.dedup();
    let mut grants = doc.grant_types.clone();
    grants.sort();
    grants.dedup();
    let digest = Sha256::digest(json!([uris, grants]).to_string().as_bytes());
    hex(&digest[..8])
}

/// The KV prefix under which a document's upstream clients are recorded.
pub fn kv_prefix(client_id: &str) -> String {
    let digest = Sha256::digest(client_id.as_bytes());
    format!(
        "cimd/v1/{}/",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// The KV key of one registration: ordered by time, unique per upstream client.
pub fn kv_key(client_id: &str, created_ms: i64, upstream_id: &str) -> String {
    let digest = Sha256::digest(upstream_id.as_bytes());
    format!(
        "{}{created_ms:015}-{}",
        kv_prefix(client_id),
        hex(&digest[..4])
    )
}

/// One upstream client registered for a document (a KV key's metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The upstream client id.
    #[serde(rename = "c")]
    pub client_id: String,
    /// The document's [`fingerprint`] when it was registered.
    #[serde(rename = "f")]
    pub fingerprint: String,
    /// When (milliseconds since the epoch).
    #[serde(rename = "t")]
    pub created_ms: i64,
}

/// The upstream client for an authorization request: the earliest registered with
/// the document's current fingerprint, so every isolate picks the same one.
pub fn for_authorization<'a>(records: &'a [(String, Record)], fp: &str) -> Option<&'a Record> {
    records
        .iter()
        .filter(|(_, r)| r.fingerprint == fp)
        .min_by(|(ka, a), (kb, b)| (a.created_ms, ka).cmp(&(b.created_ms, kb)))
        .map(|(_, r)| r)
}

/// The upstream clients a token request tries, in order: the group of the newest
/// registration (earliest first, the one authorization requests use), then older
/// groups, newest first. At most [`MAX_TRIES`].
pub fn for_token(records: &[(String, Record)]) -> Vec<&Record> {
    let mut sorted: Vec<&(String, Record)> = records.iter().collect();
    sorted.sort_by(|(ka, a), (kb, b)| (a.created_ms, ka).cmp(&(b.created_ms, kb)));
    // Groups by fingerprint, ordered by their newest record, newest first.
    let mut groups: Vec<(i64, &str)> = Vec::new();
    for (_, r) in &sorted {
        match groups.iter_mut().find(|(_, f)| *f == r.fingerprint) {
            Some(g) => g.0 = g.0.max(r.created_ms),
            None => groups.push((r.created_ms, &r.fingerprint)),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.0));
    let mut out = Vec::new();
    for (_, fp) in groups {
        for (_, r) in sorted.iter().filter(|(_, r)| r.fingerprint == fp) {
            if out.len() < MAX_TRIES && !out.iter().any(|o: &&Record| o.client_id == r.client_id) {
                out.push(r);
            }
        }
    }
    out
}

/// Whether a token endpoint answer is `invalid_grant` (worth trying another client).
pub fn is_invalid_grant(status: u16, body: &[u8]) -> bool {
    status == 400
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .as_deref()
            == Some("invalid_grant")
}

/// An upstream answer with a top-level `client_id` naming the upstream client
/// shown with the document URL instead; `None` when there is nothing to change.
pub fn map_answer(body: &[u8], upstream_id: &str, url: &str) -> Option<Vec<u8>> {
    let mut map: Map<String, Value> = serde_json::from_slice(body).ok()?;
    if map.get("client_id").and_then(Value::as_str) != Some(upstream_id) {
        return None;
    }
    map.insert("client_id".into(), json!(url));
    serde_json::to_vec(&map).ok()
}

/// What one isolate remembers: fetched documents until their cache lifetime ends,
/// and the records it wrote itself (KV lists may lag behind a write).
#[derive(Debug, Default)]
pub struct Memory {
    documents: HashMap<String, (Document, i64)>,
    written: HashMap<String, Vec<(String, Record)>>,
}

impl Memory {
    pub fn document(&self, url: &str, now: i64) -> Option<&Document> {
        self.documents
            .get(url)
            .filter(|(_, until)| *until > now)
            .map(|(d, _)| d)
    }

    pub fn keep_document(&mut self, doc: Document, seconds: i64, now: i64) {
        if seconds <= 0 {
            self.documents.remove(&doc.client_id);
            return;
        }
        if self.documents.len() >= MAX_REMEMBERED {
            self.documents.retain(|_, (_, until)| *until > now);
            if self.documents.len() >= MAX_REMEMBERED {
                self.documents.clear();
            }
        }
        self.documents
            .insert(doc.client_id.clone(), (doc, now + seconds));
    }

    pub fn wrote(&mut self, url: &str, key: String, record: Record) {
        if self.written.len() >= MAX_REMEMBERED && !self.written.contains_key(url) {
            self.written.clear();
        }
        self.written
            .entry(url.to_string())
            .or_default()
            .push((key, record));
    }

    /// Listed records plus this isolate's own, each key once.
    pub fn merge(&self, url: &str, mut listed: Vec<(String, Record)>) -> Vec<(String, Record)> {
        for (k, r) in self.written.get(url).into_iter().flatten() {
            if !listed.iter().any(|(lk, _)| lk == k) {
                listed.push((k.clone(), r.clone()));
            }
        }
        listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://client.example/oauth/client.json";

    fn doc_json(extra: Value) -> Vec<u8> {
        let mut base = json!({
            "client_id": URL,
            "client_name": "Example",
            "redirect_uris": ["http://127.0.0.1:3000/callback", "https://client.example/cb"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        serde_json::to_vec(&base).unwrap()
    }

    fn parse(extra: Value) -> Result<Document, String> {
        parse_document(
            URL,
            200,
            Some("application/json; charset=utf-8"),
            &doc_json(extra),
        )
    }

    /// Every row of the IANA special-purpose registries (IPv4 and IPv6), each form
    /// that embeds an IPv4 address, and the review's examples.
    #[test]
    fn special_purpose_addresses_are_never_public() {
        let kind = |h: &str| host_kind(&Url::parse(&format!("https://{h}/c.json")).unwrap());
        for h in [
            "0.1.2.3",
            "10.1.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "[::]",
            "[::a00:1]",
            "[::ffff:a9fe:a9fe]",
            "[::ffff:0:a9fe:a9fe]",
            "[::ffff:0:7f00:1]",
            "[64:ff9b::7f00:1]",
            "[64:ff9b::a9fe:a9fe]",
            "[64:ff9b:1::1]",
            "[100::1]",
            "[100:0:0:1::1]",
            "[2001::1]",
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
            "[2001:2::1]",
            "[2001:10::1]",
            "[2001:20::1]",
            "[2001:db8::1]",
            "[2002:7f00:1::]",
            "[2002:a9fe:a9fe::]",
            "[2002:a00:1::1]",
            "[2002:c0a8:1::]",
            "[3fff::1]",
            "[5f00::1]",
            "[fc00::1]",
            "[fd12:3456::1]",
            "[fe80::1]",
            "[fec0::1]",
            "[ff02::1]",
        ] {
            assert_eq!(kind(h), HostKind::Private, "{h}");
        }
        for h in ["127.0.0.1", "127.1.2.3", "[::1]"] {
            assert_eq!(kind(h), HostKind::Loopback, "{h}");
        }
        for h in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "198.20.0.1",
            "[2606:4700::1111]",
            "[2a00:1450::1]",
            "[::ffff:808:808]",
            "[64:ff9b::808:808]",
            "[2002:808:808::1]",
            "[2001:200::1]",
        ] {
            assert_eq!(kind(h), HostKind::Public, "{h}");
        }
    }

    #[test]
    fn client_id_urls_are_checked_before_any_fetch() {
        assert!(check_client_id(URL, false).is_ok());
        assert!(check_client_id("https://client.example:8443/c.json", false).is_ok());
        let refused = [
            ("http://client.example/c.json", "https"),
            ("https://client.example/", "path"),
            ("https://client.example", "path"),
            ("https://client.example/c.json?x=1", "query"),
            ("https://client.example/c.json#f", "fragment"),
            ("https://u:p@client.example/c.json", "user name"),
            ("https://client.example/a/../c.json", "normal form"),
            ("https://Client.Example/c.json", "normal form"),
            ("https://client.example:443/c.json", "normal form"),
            ("https://127.0.0.1/c.json", "loopback"),
            ("https://localhost/c.json", "loopback"),
            ("https://app.localhost/c.json", "loopback"),
            ("https://[::1]/c.json", "loopback"),
            ("https://10.0.0.8/c.json", "private"),
            ("https://172.20.1.1/c.json", "private"),
            ("https://192.168.1.1/c.json", "private"),
            ("https://169.254.169.254/latest", "private"),
            ("https://100.64.0.1/c.json", "private"),
            ("https://0.0.0.0/c.json", "private"),
            ("https://[fd00::1]/c.json", "private"),
            ("https://[fe80::1]/c.json", "private"),
            ("https://[::ffff:10.0.0.1]/c.json", "private"),
            ("https://[64:ff9b::a00:1]/c.json", "private"),
            ("https://metadata.internal/c.json", "private"),
            ("https://printer.local/c.json", "private"),
            ("https://intranet/c.json", "private"),
            ("ftp://client.example/c.json", "https"),
            ("not a url", "not a URL"),
        ];
        for (raw, why) in refused {
            let e = check_client_id(raw, false).unwrap_err();
            assert!(e.contains(why), "{raw}: {e}");
        }
        // Numeric forms are normalised before the check: 0x7f.1 is 127.0.0.1.
        assert!(check_client_id("https://0x7f.1/c.json", false).is_err());
        let long = format!("https://client.example/{}", "a".repeat(MAX_URL_BYTES));
        assert!(check_client_id(&long, false)
            .unwrap_err()
            .contains("longer"));
        // The development switch opens loopback (http too), never private hosts.
        assert!(check_client_id("http://127.0.0.1:8080/c.json", true).is_ok());
        assert!(check_client_id("https://localhost:8443/c.json", true).is_ok());
        assert!(check_client_id("http://10.0.0.1/c.json", true).is_err());
        assert!(check_client_id("http://client.example/c.json", true).is_err());
    }

    #[test]
    fn only_http_urls_are_documents() {
        assert!(is_document_url(URL));
        assert!(is_document_url("HTTPS://x/y"));
        assert!(is_document_url("http://127.0.0.1/c"));
        assert!(!is_document_url("abc123"));
        assert!(!is_document_url("urn:x"));
        assert!(!is_document_url("é"));
    }

    #[test]
    fn a_good_document_becomes_a_public_registration() {
        let d = parse(json!({"logo_uri": "https://client.example/logo.png", "client_secret_x": 1}))
            .unwrap();
        assert_eq!(d.problem, None);
        assert_eq!(d.redirect_uris.len(), 2);
        assert_eq!(
            Value::Object(d.registration.clone()),
            json!({
                "client_name": "Example",
                "logo_uri": "https://client.example/logo.png",
                "redirect_uris": ["http://127.0.0.1:3000/callback", "https://client.example/cb"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
        );
        // Defaults: no grant_types means authorization_code; +json media types pass.
        let d = parse_document(
            URL,
            200,
            Some("application/oauth-client+json"),
            &doc_json(json!({"grant_types": null, "token_endpoint_auth_method": null})),
        )
        .unwrap();
        assert_eq!(d.grant_types, ["authorization_code"]);
        assert_eq!(d.problem, None);
    }

    #[test]
    fn untrustworthy_documents_are_hard_failures() {
        let body = doc_json(json!({}));
        let cases: Vec<(u16, Option<&str>, Vec<u8>, &str)> = vec![
            (302, Some("application/json"), body.clone(), "redirect"),
            (404, Some("application/json"), body.clone(), "404"),
            (200, Some("text/html"), body.clone(), "content type"),
            (200, None, body.clone(), "content type"),
            (
                200,
                Some("application/json"),
                b"<html>".to_vec(),
                "not JSON",
            ),
            (
                200,
                Some("application/json"),
                b"[1]".to_vec(),
                "not a JSON object",
            ),
            (
                200,
                Some("application/json"),
                vec![b' '; MAX_DOCUMENT_BYTES + 1],
                "larger",
            ),
            (
                200,
                Some("application/json"),
                doc_json(json!({"client_id": "https://evil.example/c.json"})),
                "not its own URL",
            ),
            (
                200,
                Some("application/json"),
                doc_json(json!({"client_id": format!("{URL}/")})),
                "not its own URL",
            ),
            (
                200,
                Some("application/json"),
                doc_json(json!({"client_id": null})),
                "no client_id",
            ),
            (
                200,
                Some("application/json"),
                doc_json(json!({"redirect_uris": null})),
                "no redirect_uris",
            ),
            (
                200,
                Some("application/json"),
                doc_json(json!({"redirect_uris": []})),
                "non-empty",
            ),
            (
                200,
                Some("application/json"),
                doc_json(json!({"redirect_uris": ["http://client.example/cb"]})),
                "redirect_uris",
            ),
            (
                200,
                Some("application/json"),
                doc_json(json!({"redirect_uris": ["https://client.example/cb#x"]})),
                "fragment",
            ),
        ];
        for (status, ct, body, why) in cases {
            let e = parse_document(URL, status, ct, &body).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn other_problems_are_reported_to_the_redirect_uri() {
        let cases = [
            (json!({"client_name": null}), "client_name"),
            (json!({"client_name": " "}), "client_name"),
            (json!({"client_secret": "s"}), "shared secrets"),
            (json!({"client_secret_expires_at": 0}), "shared secrets"),
            (
                json!({"token_endpoint_auth_method": "client_secret_basic"}),
                "shared secrets",
            ),
            (
                json!({"token_endpoint_auth_method": "private_key_jwt"}),
                "public clients",
            ),
            (
                json!({"grant_types": ["client_credentials"]}),
                "not supported",
            ),
            (
                json!({"grant_types": ["refresh_token"]}),
                "authorization_code",
            ),
            (json!({"grant_types": "authorization_code"}), "array"),
            (json!({"response_types": ["token"]}), "response_types"),
        ];
        for (extra, why) in cases {
            let d = parse(extra.clone()).unwrap();
            let p = d.problem.unwrap_or_default();
            assert!(p.contains(why), "{extra}: {p:?}");
        }
    }

    #[test]
    fn redirect_uris_must_be_listed() {
        let d = parse(json!({})).unwrap();
        assert_eq!(
            check_redirect(&d, Some("https://client.example/cb")).unwrap(),
            "https://client.example/cb"
        );
        assert!(check_redirect(&d, Some("https://client.example/cb/")).is_err());
        assert!(check_redirect(&d, Some("https://evil.example/cb")).is_err());
        assert!(check_redirect(&d, None).unwrap_err().contains("required"));
        let one = parse(json!({"redirect_uris": ["https://client.example/cb"]})).unwrap();
        assert_eq!(
            check_redirect(&one, None).unwrap(),
            "https://client.example/cb"
        );
    }

    #[test]
    fn errors_redirect_with_state_and_issuer() {
        let loc = redirect_error(
            "https://client.example/cb?x=1",
            Some("s 1"),
            "https://mcp.example.com/oidc",
            "unauthorized_client",
            "no client_name",
        );
        assert_eq!(
            loc,
            "https://client.example/cb?x=1&error=unauthorized_client&error_description=no+client_name&state=s+1&iss=https%3A%2F%2Fmcp.example.com%2Foidc"
        );
    }

    #[test]
    fn errors_are_plain_or_redirected() {
        let r = refuse("invalid_client", "document unreachable").reply(&Default::default());
        assert_eq!(r.status, 400);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"error": "invalid_client", "error_description": "document unreachable"})
        );
        let r = unknown_client(URL).reply(&Default::default());
        assert_eq!(r.status, 401);
        let req = AuthorizationRequest {
            client_id: URL.into(),
            redirect_uri: None,
            state: Some("st".into()),
        };
        let e = to_client(
            &req,
            "https://client.example/cb",
            "https://i",
            "server_error",
            "down",
        );
        assert_eq!(e.status(), 302);
        assert_eq!(e.to_string(), "server_error: down");
        let r = e.reply(&Default::default());
        assert_eq!(
            r.header("location"),
            Some("https://client.example/cb?error=server_error&error_description=down&state=st&iss=https%3A%2F%2Fi")
        );
        assert!(r.body.is_empty());
    }

    #[test]
    fn cache_lifetime_follows_cache_control_within_the_ceiling() {
        assert_eq!(cache_seconds(None, 3600), DEFAULT_CACHE_SECONDS);
        assert_eq!(cache_seconds(None, 60), 60);
        assert_eq!(cache_seconds(Some("public, max-age=120"), 3600), 120);
        assert_eq!(cache_seconds(Some("max-age=999999"), 3600), 3600);
        assert_eq!(cache_seconds(Some("no-store"), 3600), 0);
        assert_eq!(cache_seconds(Some("max-age=60, no-cache"), 3600), 0);
        assert_eq!(cache_seconds(Some("max-age=-5"), 3600), 0);
        assert_eq!(
            cache_seconds(Some("max-age=abc"), 3600),
            DEFAULT_CACHE_SECONDS
        );
        assert_eq!(cache_seconds(Some("max-age=100"), 0), 0);
    }

    #[test]
    fn authorization_requests_are_recognised_and_rewritten() {
        let q = "response_type=code&client_id=https%3A%2F%2Fclient.example%2Foauth%2Fclient.json&redirect_uri=https%3A%2F%2Fclient.example%2Fcb&state=a%2Bb&scope=x+y";
        let r = authorization_request(q).unwrap();
        assert_eq!(r.client_id, URL);
        assert_eq!(r.redirect_uri.as_deref(), Some("https://client.example/cb"));
        assert_eq!(r.state.as_deref(), Some("a+b"));
        assert_eq!(
            replace_client_id(q, "up stream"),
            "response_type=code&client_id=up+stream&redirect_uri=https%3A%2F%2Fclient.example%2Fcb&state=a%2Bb&scope=x+y"
        );
        assert_eq!(
            authorization_request("response_type=code&client_id=abc"),
            None
        );
        assert_eq!(authorization_request(&format!("client_id={URL}")), None);
        assert_eq!(replace_client_id("grant_type=x", "y"), "grant_type=x");
    }

    fn rec(key: &str, c: &str, f: &str, t: i64) -> (String, Record) {
        (
            key.to_string(),
            Record {
                client_id: c.into(),
                fingerprint: f.into(),
                created_ms: t,
            },
        )
    }

    #[test]
    fn every_isolate_picks_the_same_client() {
        // Two isolates registered the same document at once (A and B), then the
        // document changed (C, D registered concurrently again).
        let records = vec![
            rec("k2", "B", "f1", 1001),
            rec("k1", "A", "f1", 1000),
            rec("k4", "D", "f2", 2000),
            rec("k3", "C", "f2", 2000),
        ];
        assert_eq!(for_authorization(&records, "f1").unwrap().client_id, "A");
        // Same time: the key decides.
        assert_eq!(for_authorization(&records, "f2").unwrap().client_id, "C");
        assert_eq!(for_authorization(&records, "f3"), None);
        let order: Vec<&str> = for_token(&records)
            .iter()
            .map(|r| r.client_id.as_str())
            .collect();
        assert_eq!(order, ["C", "D", "A"]);
        let mut reversed = records.clone();
        reversed.reverse();
        assert_eq!(
            for_token(&reversed)
                .iter()
                .map(|r| r.client_id.as_str())
                .collect::<Vec<_>>(),
            ["C", "D", "A"]
        );
        assert!(for_token(&[]).is_empty());
    }

    #[test]
    fn fingerprints_follow_redirect_uris_and_grants_only() {
        let a = parse(json!({})).unwrap();
        let renamed = parse(json!({"client_name": "Other"})).unwrap();
        let reordered = parse(json!({"redirect_uris": ["https://client.example/cb", "http://127.0.0.1:3000/callback"]})).unwrap();
        let moved = parse(json!({"redirect_uris": ["https://client.example/new"]})).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&renamed));
        assert_eq!(fingerprint(&a), fingerprint(&reordered));
        assert_ne!(fingerprint(&a), fingerprint(&moved));
        assert_eq!(fingerprint(&a).len(), 16);
    }

    #[test]
    fn kv_keys_sort_by_time_and_stay_short() {
        let k1 = kv_key(URL, 999, "a");
        let k2 = kv_key(URL, 1000, "a");
        assert!(k1 < k2);
        assert!(k1.starts_with(&kv_prefix(URL)));
        assert_ne!(
            kv_prefix(URL),
            kv_prefix("https://client.example/other.json")
        );
        assert!(kv_key(&"x".repeat(MAX_URL_BYTES), i64::MAX, &"y".repeat(5000)).len() < 100);
    }

    #[test]
    fn registration_answers_must_be_public_clients() {
        assert_eq!(
            read_registration(
                201,
                br#"{"client_id":"up1","token_endpoint_auth_method":"none"}"#
            )
            .unwrap(),
            "up1"
        );
        assert_eq!(
            read_registration(201, br#"{"client_id":"up1"}"#).unwrap(),
            "up1"
        );
        for body in [
            &br#"{"client_id":"up1","client_secret":"s3cr3t"}"#[..],
            br#"{"client_id":"up1","token_endpoint_auth_method":"client_secret_basic"}"#,
        ] {
            let e = read_registration(201, body).unwrap_err().to_string();
            assert!(e.contains("confidential") && !e.contains("s3cr3t"), "{e}");
        }
        assert!(read_registration(201, b"{}").is_err());
        assert!(read_registration(201, b"nope").is_err());
        let e = read_registration(400, br#"{"error":"invalid_redirect_uri"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid_redirect_uri"), "{e}");
    }

    #[test]
    fn token_answers_and_retries() {
        assert!(is_invalid_grant(400, br#"{"error":"invalid_grant"}"#));
        assert!(!is_invalid_grant(400, br#"{"error":"invalid_request"}"#));
        assert!(!is_invalid_grant(401, br#"{"error":"invalid_grant"}"#));
        assert!(!is_invalid_grant(400, b"junk"));
        assert_eq!(
            map_answer(br#"{"client_id":"up1","a":1}"#, "up1", URL).unwrap(),
            serde_json::to_vec(&json!({"client_id": URL, "a": 1})).unwrap()
        );
        assert_eq!(map_answer(br#"{"access_token":"t"}"#, "up1", URL), None);
    }

    #[test]
    fn memory_keeps_documents_for_their_lifetime_and_own_writes() {
        let mut m = Memory::default();
        let d = parse(json!({})).unwrap();
        m.keep_document(d.clone(), 10, 100);
        assert!(m.document(URL, 109).is_some());
        assert!(m.document(URL, 110).is_none());
        m.keep_document(d, 0, 100);
        assert!(m.document(URL, 100).is_none());
        let (k, r) = rec("k1", "A", "f", 1);
        m.wrote(URL, k.clone(), r.clone());
        assert_eq!(m.merge(URL, vec![]), vec![(k.clone(), r.clone())]);
        assert_eq!(m.merge(URL, vec![(k.clone(), r.clone())]).len(), 1);
        assert!(m.merge("https://other.example/c", vec![]).is_empty());
    }
}
