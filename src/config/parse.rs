//! Reading binding values: each reader names the binding in its error, and takes an
//! unset binding's value from the table's default ([`super::TABLE`]).

use super::default_of;
use crate::error::Error;
use url::Url;

/// A configuration error naming its binding.
pub(crate) fn problem(binding: &str, problem: impl Into<String>) -> Error {
    Error::Config {
        binding: binding.to_string(),
        problem: problem.into(),
    }
}

/// The bindings as the worker got them. Values are trimmed; empty strings count as
/// absent.
pub(crate) struct Bindings<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Bindings<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Bindings<'a> {
        Bindings { lookup }
    }

    /// The value set, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The value set, else the table's default.
    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name)
            .or_else(|| default_of(name).map(str::to_string))
    }

    /// The value of a binding the table marks required.
    pub fn required(&self, name: &str) -> Result<String, Error> {
        self.get(name)
            .ok_or_else(|| problem(name, "is required but not set"))
    }

    /// A `true`/`false` binding.
    pub fn flag(&self, name: &str) -> Result<bool, Error> {
        match self.value(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(problem(
                name,
                format!("must be true or false, got {other:?}"),
            )),
        }
    }

    /// A space-separated list (empty when unset and without a default).
    pub fn words(&self, name: &str) -> Vec<String> {
        words(self.value(name).as_deref())
    }

    /// A whole number within `range`.
    pub fn number<T>(&self, name: &str, range: std::ops::RangeInclusive<T>) -> Result<T, Error>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let v = self
            .value(name)
            .ok_or_else(|| problem(name, "has no value and no default"))?;
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(problem(
                name,
                format!(
                    "must be a whole number from {} to {}, got {v:?}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// An http(s) URL, when set.
    pub fn url(&self, name: &str) -> Result<Option<Url>, Error> {
        self.value(name).map(|v| http_url(name, &v)).transpose()
    }
}

/// An `Authorization` value for HTTP Basic client authentication: `Basic` and the
/// base64 of `id:secret`, each form-encoded first (RFC 6749 §2.3.1).
pub(crate) fn basic_credentials(id: &str, secret: &str) -> String {
    use base64::Engine;
    let form = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", form(id), form(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

pub(crate) fn words(value: Option<&str>) -> Vec<String> {
    value
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// An http(s) URL without a fragment or credentials.
pub(crate) fn http_url(binding: &str, value: &str) -> Result<Url, Error> {
    let url =
        Url::parse(value).map_err(|e| problem(binding, format!("not a URL ({e}): {value:?}")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(problem(
            binding,
            format!("must be http or https, got {:?}", url.scheme()),
        ));
    }
    if url.fragment().is_some() {
        return Err(problem(binding, "must not have a #fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(problem(
            binding,
            "must not carry credentials; use a secret binding",
        ));
    }
    Ok(url)
}
