//! Forward every request to `ORIGIN_URL`, the plain workers-rs way (`#[event(fetch)]`,
//! `worker::Request`, `Fetch`): the benchmark's floor for a Rust worker.
use worker::*;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let origin = env.var("ORIGIN_URL")?.to_string();
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{}{}?{q}", origin.trim_end_matches('/'), url.path()),
        None => format!("{}{}", origin.trim_end_matches('/'), url.path()),
    };
    let mut init = RequestInit::new();
    init.with_method(req.method())
        .with_headers(req.headers().clone())
        .with_body(req.inner().body().map(Into::into));
    Fetch::Request(Request::new_with_init(&target, &init)?).send().await
}
