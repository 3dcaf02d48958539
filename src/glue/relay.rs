//! A client's request relayed to the authorization server (the pass-through,
//! [`crate::platform::Relay`]).

use super::*;

// ---- the client's request, relayed to the authorization server ------------------------

/// The client's request on its way to the authorization server ([`Relay`]).
pub(super) struct Relayed<'r> {
    pub(super) req: RefCell<&'r mut Request>,
}

impl Relayed<'_> {
    /// The request to `target`: the client's headers (its own credentials included;
    /// how the request reached the worker, the worker says itself), and `form`
    /// instead of its body when given.
    fn outgoing(&self, target: &str, form: Option<String>) -> Result<Request, Error> {
        let req = self.req.borrow();
        let headers = Headers::new();
        let (named, identity) = with_auth(|a| {
            let connection = req.headers().get("connection").ok().flatten();
            (
                proxy::connection_named(connection.as_deref()),
                a.cfg.origin.strip_identity.clone(),
            )
        })?;
        for (name, value) in req.headers().entries() {
            let keep = proxy::AUTHORIZATION_SERVER_CREDENTIALS.contains(&name.as_str())
                || !(proxy::strip_request_header(&name, &named, &identity)
                    || proxy::FORWARDING_HEADERS.contains(&name.as_str()));
            if keep && !(form.is_some() && name == "content-length") {
                let _ = headers.append(&name, &value);
            }
        }
        // The public name of the authorization server, from ISSUER: never the
        // request's Host, never a client's Forwarded.
        let (host, proto) = with_auth(|a| a.cfg.public_issuer_host())?;
        let _ = headers.set("forwarded", &format!("host=\"{host}\";proto={proto}"));
        let _ = headers.set("x-forwarded-host", &host);
        let _ = headers.set("x-forwarded-proto", &proto);
        let body = match form {
            Some(f) => Some(JsValue::from_str(&f)),
            None => req.inner().body().map(JsValue::from),
        };
        outbound(req.method().as_ref(), target, &headers, body).map_err(|e| {
            Error::Upstream(
                Fault::new("AS_PASSTHROUGH: the pass-through URL cannot be fetched")
                    .detail(redact_urls(&e)),
            )
        })
    }
}

impl Relay for Relayed<'_> {
    type Response = Response;

    fn method(&self) -> String {
        self.req.borrow().method().to_string()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.req.borrow().headers().get(name).ok().flatten()
    }

    async fn body(&self, cap: usize) -> Result<Vec<u8>, Error> {
        // A declared length over the cap is refused before the body is touched: a
        // stream taken and dropped unread would cancel it, and the runtime (wrangler
        // dev's proxy, at least) then stalls the connection.
        let declared = declared_length(&self.req.borrow());
        if declared.is_some_and(|n| n > cap) {
            return Err(Error::PayloadTooLarge(cap));
        }
        let stream = self.req.borrow_mut().stream();
        read_body_stream(declared, stream, cap).await
    }

    async fn forward(&self, target: &str, form: Option<String>) -> Result<Response, Error> {
        let upstream = self.outgoing(target, form)?;
        Fetch::Request(upstream).send().await.map_err(|e| {
            Error::Upstream(
                Fault::new("AS_PASSTHROUGH: the authorization server is unreachable").detail(
                    format!("{}: {}", redact_url(target), redact_urls(&e.to_string())),
                ),
            )
        })
    }

    async fn read(&self, mut response: Response, cap: usize) -> Result<Answer, Error> {
        let status = response.status_code();
        let headers = response.headers().entries().collect();
        let body = read_capped(&mut response, cap).await.map_err(|e| match e {
            Capped::TooLarge => flows::cimd::read_failure(true, ""),
            Capped::Failed(m) => flows::cimd::read_failure(false, &m),
        })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn build(&self, answer: Answer) -> Result<Response, Error> {
        let headers = Headers::new();
        for (name, value) in &answer.headers {
            if !matches!(
                name.as_str(),
                "content-length" | "content-encoding" | "transfer-encoding"
            ) {
                let _ = headers.append(name, value);
            }
        }
        Ok(Response::from_bytes(answer.body)
            .map_err(|e| {
                Error::Upstream(Fault::new("the answer could not be built").detail(e.to_string()))
            })?
            .with_status(answer.status)
            .with_headers(headers))
    }
}
