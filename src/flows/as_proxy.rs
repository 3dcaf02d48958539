//! The worker as the authorization server's proxy: registrations
//! (`REGISTRATION_PATH`, RFC 7591, cleaned by [`crate::registration`]) and the
//! pass-through (`AS_PASSTHROUGH`) with what it changes on the way: Client ID Metadata
//! Documents ([`super::cimd`]) and the token-request defaults of the Hydra adapter
//! ([`proxy::token_defaults`]). Generic over [`Platform`] and [`Relay`].

use crate::cimd;
use crate::config::Flavor;
use crate::error::{Error, Reply};
use crate::flows::{cimd as cimd_flow, upstream};
use crate::platform::{Platform, Relay};
use crate::proxy;
use crate::registration;

/// A registration: the client's body validated, re-serialised for the upstream,
/// posted, and the answer cleaned for strict clients.
pub async fn register<P: Platform, R: Relay>(p: &P, relay: &R) -> Result<Reply, Error> {
    let body = relay.body(registration::MAX_BODY).await?;
    let request = registration::validate_request(&body)?;
    let authorization = relay.header("authorization");
    let body = p.with_auth(|a| registration::outgoing(&a.cfg, &request))?;
    let (status, answer) = upstream::post_registration(p, body, authorization).await?;
    if (200..300).contains(&status) {
        registration::clean_answer(&request, &answer)
    } else {
        Err(registration::upstream_error(status, &answer))
    }
}

/// A request under an `AS_PASSTHROUGH` prefix, sent on to `target`.
pub async fn pass<P: Platform, R: Relay>(
    p: &P,
    relay: &R,
    target: &str,
) -> Result<R::Response, Error> {
    let cimd_on = p.with_auth(|a| a.cfg.cimd.clone())?;
    if let Some(c) = &cimd_on {
        if relay.method() == "GET" {
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
            if let Some(ar) = cimd::authorization_request(query) {
                return cimd_flow::authorize(p, relay, target, ar, c).await;
            }
        }
    }
    let form = read_form(p, relay).await?;
    if let (Some(f), Some(_)) = (&form, &cimd_on) {
        if let Some(url) = cimd::form_value(f, "client_id").filter(|c| cimd::is_document_url(c)) {
            return cimd_flow::form(p, relay, target, f, &url).await;
        }
    }
    let form = match form {
        Some(f) => Some(
            p.with_auth(|a| proxy::token_defaults(&a.cfg, &f))?
                .unwrap_or(f),
        ),
        None => None,
    };
    relay.forward(target, form).await
}

/// A form POST's body, read when the worker may change it (the Hydra adapter's token
/// defaults, a CIMD `client_id`); `None` to stream the client's body unchanged.
async fn read_form<P: Platform, R: Relay>(p: &P, relay: &R) -> Result<Option<String>, Error> {
    let wanted = p.with_auth(|a| a.cfg.upstream.flavor == Flavor::Hydra || a.cfg.cimd.is_some())?;
    let form = relay.header("content-type").is_some_and(|t| {
        t.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !wanted || !form || relay.method() != "POST" {
        return Ok(None);
    }
    let body = relay.body(cimd_flow::MAX_FORM_BYTES).await?;
    String::from_utf8(body)
        .map(Some)
        .map_err(|_| Error::InvalidRequest("the form body is not UTF-8".into()))
}
