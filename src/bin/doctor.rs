//! `mcp-edge-auth-doctor`: check a deployment's configuration, its authorization
//! server, its origin, a token and a deployed worker, one line per check, before a
//! client finds what is wrong. The checks are [`mcp_edge_auth::doctor`]; this file
//! reads the command line and files and does HTTP with timeouts.
//!
//! ```text
//! cargo run --bin mcp-edge-auth-doctor -- [--config wrangler.toml] [--env NAME]
//!     [--dev-vars FILE] [--var KEY=VALUE]... [--token TOKEN | --token -]
//!     [--dpop-proof PROOF [--dpop-method METHOD]]
//!     [--url https://deployed.example.com] [--timeout SECONDS] [--json]
//! ```
//!
//! `--token -` reads the token from standard input (so it is not in the process
//! list or shell history). Exit status: 0 when every check passes, 1 when one fails,
//! 2 for a usage error.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(native::main());
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use mcp_edge_auth::doctor::{self, Answer, Check, Http, Options};
    use std::io::Read;
    use std::time::Duration;

    const USAGE: &str = "usage: mcp-edge-auth-doctor [--config wrangler.toml] [--env NAME] [--dev-vars FILE] [--var KEY=VALUE]... [--token TOKEN|-] [--dpop-proof PROOF [--dpop-method METHOD]] [--url URL] [--timeout SECONDS] [--json]";

    struct Client(ureq::Agent);

    impl Client {
        fn new(timeout: u64) -> Client {
            Client(
                ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(timeout))
                    .redirects(0)
                    .build(),
            )
        }

        fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<Answer, String> {
            let response = match result {
                Ok(r) => r,
                Err(ureq::Error::Status(_, r)) => r,
                // The checks name the URL; the reason is enough here.
                Err(ureq::Error::Transport(t)) => {
                    let text = t.to_string();
                    let url = t.url().map(|u| format!("{u}: ")).unwrap_or_default();
                    return Err(text.strip_prefix(&url).unwrap_or(&text).to_string());
                }
            };
            let status = response.status();
            let headers = response
                .headers_names()
                .into_iter()
                .filter_map(|n| {
                    response
                        .header(&n)
                        .map(|v| (n.to_ascii_lowercase(), v.to_string()))
                })
                .collect();
            let mut body = Vec::new();
            response
                .into_reader()
                .take(1 << 20)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
            Ok(Answer {
                status,
                headers,
                body,
            })
        }
    }

    impl Http for Client {
        fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
            let mut req = self.0.get(url).set("accept", "application/json");
            for (n, v) in headers {
                req = req.set(n, v);
            }
            Client::answer(req.call())
        }
        fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, String> {
            let mut req = self.0.post(url);
            for (n, v) in headers {
                req = req.set(n, v);
            }
            Client::answer(req.send_bytes(body))
        }
    }

    struct Args {
        config: String,
        env: Option<String>,
        dev_vars: Option<String>,
        vars: Vec<(String, String)>,
        token: Option<String>,
        dpop_proof: Option<String>,
        dpop_method: Option<String>,
        url: Option<String>,
        timeout: u64,
        json: bool,
    }

    fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            config: "wrangler.toml".into(),
            env: None,
            dev_vars: None,
            vars: Vec::new(),
            token: None,
            dpop_proof: None,
            dpop_method: None,
            url: None,
            timeout: 5,
            json: false,
        };
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--config" => a.config = value()?,
                "--env" => a.env = Some(value()?),
                "--dev-vars" => a.dev_vars = Some(value()?),
                "--var" => {
                    let v = value()?;
                    let (k, v) = v.split_once('=').ok_or("--var takes KEY=VALUE")?;
                    a.vars.push((k.to_string(), v.to_string()));
                }
                "--token" => a.token = Some(value()?),
                "--dpop-proof" => a.dpop_proof = Some(value()?),
                "--dpop-method" => a.dpop_method = Some(value()?),
                "--url" => a.url = Some(value()?),
                "--timeout" => {
                    a.timeout = value()?
                        .parse()
                        .ok()
                        .filter(|t| (1..=60).contains(t))
                        .ok_or("--timeout takes 1 to 60 seconds")?
                }
                "--json" => a.json = true,
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(a)
    }

    fn print(report: &[Check], json: bool) {
        if json {
            let ok = report.iter().all(|c| c.ok);
            println!("{}", serde_json::json!({"ok": ok, "checks": report}));
            return;
        }
        for c in report {
            println!(
                "{} {}: {}",
                if c.ok { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(fix) = &c.fix {
                println!("     fix: {fix}");
            }
        }
        let failed = report.iter().filter(|c| !c.ok).count();
        println!("{} checks, {} failed", report.len(), failed);
    }

    pub fn main() -> i32 {
        let args = match parse(std::env::args().skip(1)) {
            Ok(a) => a,
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("{e}");
                }
                eprintln!("{USAGE}");
                return 2;
            }
        };
        let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        let toml = match read(&args.config) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        };
        // .dev.vars next to wrangler.toml is read when present, as wrangler does.
        let dev_vars = match &args.dev_vars {
            Some(p) => match read(p) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("{e}");
                    return 2;
                }
            },
            None => {
                let beside = std::path::Path::new(&args.config).with_file_name(".dev.vars");
                std::fs::read_to_string(beside).ok()
            }
        };
        let vars =
            match doctor::load_vars(&toml, args.env.as_deref(), dev_vars.as_deref(), &args.vars) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{e}");
                    return 2;
                }
            };
        let token = match args.token.as_deref() {
            Some("-") => {
                let mut t = String::new();
                if std::io::stdin().read_to_string(&mut t).is_err() {
                    eprintln!("could not read the token from standard input");
                    return 2;
                }
                Some(t.trim().to_string())
            }
            other => other.map(str::to_string),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let opts = Options {
            token,
            dpop_proof: args.dpop_proof,
            dpop_method: args.dpop_method,
            url: args.url,
            now,
        };
        let report = doctor::run(&vars, &Client::new(args.timeout), &opts);
        print(&report, args.json);
        if report.iter().all(|c| c.ok) {
            0
        } else {
            1
        }
    }
}
