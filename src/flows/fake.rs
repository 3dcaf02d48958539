//! A platform for tests: answers from a script (by URL), records every request,
//! shared-cache write, single flight and log line, and keeps its own clock. Its
//! futures do not wait, so a flow runs to its end in one poll ([`run`]), unless a test
//! holds a URL ([`Fake::hold`]): fetches of it then wait until it is released, and
//! flows run side by side ([`Concurrently`]) show what waiting requests do. Single
//! flights coalesce as the glue's do: a second caller of a kind under way waits for
//! the first and shares its outcome.

use crate::authorizer::Authorizer;
use crate::error::Error;
use crate::metadata;
use crate::platform::{Answer, Flight, Outgoing, Platform};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Run a flow on the fake platform, with no URL held.
pub fn run<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the fake platform waits only on held URLs"),
    }
}

/// Flows run side by side, as concurrent requests in one isolate: each [`step`]
/// polls every unfinished flow once, in order.
///
/// [`step`]: Concurrently::step
pub struct Concurrently<'a, T> {
    flows: Vec<(LocalFlow<'a, T>, Option<T>)>,
}

type LocalFlow<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl<'a, T> Default for Concurrently<'a, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, T> Concurrently<'a, T> {
    pub fn new() -> Self {
        Concurrently { flows: Vec::new() }
    }

    pub fn add(&mut self, f: impl Future<Output = T> + 'a) {
        self.flows.push((Box::pin(f), None));
    }

    /// Poll each unfinished flow once; how many are still waiting.
    pub fn step(&mut self) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        for (f, out) in &mut self.flows {
            if out.is_none() {
                if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                    *out = Some(v);
                }
            }
        }
        self.flows.iter().filter(|(_, o)| o.is_none()).count()
    }

    /// Step until every flow is done (a few hundred steps at most: nothing here
    /// waits on time), and their outcomes in the order added.
    pub fn finish(mut self) -> Vec<T> {
        for _ in 0..256 {
            if self.step() == 0 {
                return self.flows.into_iter().map(|(_, o)| o.unwrap()).collect();
            }
        }
        panic!("flows still waiting: is a URL still held?")
    }
}

/// Ready once `done` says so.
struct Until<F: Fn() -> bool>(F);

impl<F: Fn() -> bool> Future for Until<F> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if (self.0)() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A platform that answers from a script (by URL), records every request, every
/// shared-cache write and every single flight, and keeps its own clock.
#[derive(Clone)]
pub struct Fake(pub Rc<Inner>);

type Scripted = Result<Answer, Error>;
type FlightSlot = Rc<RefCell<Option<Result<(), Error>>>>;
/// A shared-cache entry: the bytes, when they were fetched, where from.
type Stored = (Vec<u8>, i64, String);

pub struct Inner {
    pub auth: RefCell<Authorizer>,
    pub clock: Cell<i64>,
    pub answers: RefCell<HashMap<String, Scripted>>,
    pub sent: RefCell<Vec<Outgoing>>,
    pub shared: RefCell<HashMap<String, Stored>>,
    /// Every call of `single_flight`, by kind (joined ones too).
    pub flights: RefCell<Vec<String>>,
    /// Flights under way: their outcome once done.
    in_flight: RefCell<HashMap<String, FlightSlot>>,
    /// URLs whose fetches wait until released.
    held: RefCell<Vec<String>>,
    pub logged: RefCell<Vec<String>>,
    /// The `CIMD_KV` namespace: key -> (value, metadata), in key order.
    pub kv: RefCell<BTreeMap<String, (String, Value)>>,
    /// Rate-limit keys that are over their limit.
    pub limited: RefCell<Vec<String>>,
}

impl Fake {
    pub fn new(cfg: crate::config::Config) -> Fake {
        Fake(Rc::new(Inner {
            auth: RefCell::new(Authorizer::new(cfg)),
            clock: Cell::new(1_000),
            answers: RefCell::default(),
            sent: RefCell::default(),
            shared: RefCell::default(),
            flights: RefCell::default(),
            in_flight: RefCell::default(),
            held: RefCell::default(),
            logged: RefCell::default(),
            kv: RefCell::default(),
            limited: RefCell::default(),
        }))
    }

    pub fn answer(&self, url: &str, status: u16, body: &str) {
        self.answer_with(url, status, &[], body);
    }

    pub fn answer_with(&self, url: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        let answer = Answer {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        };
        self.0
            .answers
            .borrow_mut()
            .insert(url.to_string(), Ok(answer));
    }

    pub fn fail(&self, url: &str, e: Error) {
        self.0.answers.borrow_mut().insert(url.to_string(), Err(e));
    }

    /// Fetches of `url` wait until [`Fake::release`].
    pub fn hold(&self, url: &str) {
        self.0.held.borrow_mut().push(url.to_string());
    }

    pub fn release(&self, url: &str) {
        self.0.held.borrow_mut().retain(|u| u != url);
    }

    pub fn urls(&self) -> Vec<String> {
        self.0.sent.borrow().iter().map(|o| o.url.clone()).collect()
    }

    /// The first URL discovery tries for this deployment.
    pub fn discovery_url(&self) -> String {
        self.with_auth(|a| metadata::discovery_urls(&a.cfg))
            .unwrap()[0]
            .to_string()
    }

    pub fn advance(&self, seconds: i64) {
        self.0.clock.set(self.0.clock.get() + seconds);
    }
}

impl Platform for Fake {
    fn now(&self) -> i64 {
        self.0.clock.get()
    }

    fn now_ms(&self) -> i64 {
        self.0.clock.get() * 1000
    }

    fn log(&self, line: &str) {
        self.0.logged.borrow_mut().push(line.to_string());
    }

    fn with_auth<T>(&self, f: impl FnOnce(&mut Authorizer) -> T) -> Result<T, Error> {
        Ok(f(&mut self.0.auth.borrow_mut()))
    }

    async fn fetch(&self, request: Outgoing) -> Result<Answer, Error> {
        let url = request.url.clone();
        Until(|| !self.0.held.borrow().contains(&url)).await;
        let answer = self.0.answers.borrow().get(&request.url).cloned();
        self.0.sent.borrow_mut().push(request);
        answer.unwrap_or(Ok(Answer {
            status: 404,
            ..Default::default()
        }))
    }

    async fn over_limit(&self, _binding: &str, key: &str) -> bool {
        self.0.limited.borrow().iter().any(|k| k == key)
    }

    async fn kv_list(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<(String, Option<Value>)>, Error> {
        Ok(self
            .0
            .kv
            .borrow()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .take(limit as usize)
            .map(|(k, (_, m))| (k.clone(), Some(m.clone())))
            .collect())
    }

    async fn kv_put(&self, key: &str, value: &str, metadata: &Value) -> Result<(), Error> {
        self.0
            .kv
            .borrow_mut()
            .insert(key.to_string(), (value.to_string(), metadata.clone()));
        Ok(())
    }

    async fn shared_get(&self, key: &str) -> Option<(Vec<u8>, i64, String)> {
        self.0.shared.borrow().get(key).cloned()
    }

    async fn shared_put(&self, key: &str, body: &[u8], at: i64, _ttl: i64, from: &str) {
        self.0
            .shared
            .borrow_mut()
            .insert(key.to_string(), (body.to_vec(), at, from.to_string()));
    }

    async fn single_flight(&self, kind: &str, make: impl FnOnce() -> Flight) -> Result<(), Error> {
        self.0.flights.borrow_mut().push(kind.to_string());
        let under_way = self.0.in_flight.borrow().get(kind).cloned();
        if let Some(slot) = under_way {
            Until(|| slot.borrow().is_some()).await;
            return slot.borrow().clone().unwrap();
        }
        let slot = FlightSlot::default();
        self.0
            .in_flight
            .borrow_mut()
            .insert(kind.to_string(), slot.clone());
        let outcome = make().await;
        *slot.borrow_mut() = Some(outcome.clone());
        self.0.in_flight.borrow_mut().remove(kind);
        outcome
    }
}

pub const METADATA: &str = r#"{"issuer":"https://mcp.example.com/oidc","authorization_endpoint":"https://mcp.example.com/oidc/auth","token_endpoint":"https://mcp.example.com/oidc/token","jwks_uri":"https://mcp.example.com/oidc/jwks","registration_endpoint":"https://mcp.example.com/oidc/reg","response_types_supported":["code"],"code_challenge_methods_supported":["S256"]}"#;
pub const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA","use":"sig"}]}"#;

/// The single-host deployment of `config::tests::base()`, with its authorization
/// server's answers scripted: discovery at the first URL the worker tries.
pub fn deployment() -> (Fake, String) {
    let fake = Fake::new(crate::config::tests::config());
    let first = fake.discovery_url();
    fake.answer(&first, 200, METADATA);
    (fake, first)
}
