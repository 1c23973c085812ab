//! API keys with roles, checked on every call before it reaches a service.
//!
//! A client sends `authorization: Bearer <key>`. The server knows only the SHA-256 of each key
//! (a leaked key file gives no key away) and compares digests in constant time. `reader` keys
//! may call the `Matcher` service (check and hash); `admin` keys may also call `Banks` (create,
//! change and delete banks, add, remove and export entries). Health and reflection stay open.
//! With no keys configured every call is let through, as the anonymous admin.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;

use crate::proto;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Admin,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text {
            "reader" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Admin => "admin",
        })
    }
}

/// One configured key: who holds it (for logs), its role, and the SHA-256 of the key.
#[derive(Clone)]
struct ApiKey {
    name: Arc<str>,
    role: Role,
    digest: [u8; 32],
}

/// The keys a server accepts.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|key| &*key.name).collect();
        f.debug_struct("ApiKeys").field("names", &names).finish()
    }
}

impl ApiKeys {
    /// Parses key lines: `ROLE NAME sha256:HEX`, where HEX is the SHA-256 of the key, as
    /// `hashsieve key create` prints them. Lines may also be separated by `;` (for an
    /// environment variable); blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<ApiKeys, String> {
        let mut keys: Vec<ApiKey> = Vec::new();
        for (number, line) in text.split(['\n', ';']).enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: &str| format!("API key line {}: {reason}", number + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [role, name, digest] = fields[..] else {
                return Err(fail("expected `ROLE NAME sha256:HEX`"));
            };
            let role = Role::parse(role).ok_or_else(|| fail("the role must be `reader` or `admin`"))?;
            let digest = digest
                .strip_prefix("sha256:")
                .and_then(parse_digest)
                .ok_or_else(|| fail("the digest must be `sha256:` and 64 hex digits"))?;
            if keys.iter().any(|key| *key.name == *name) {
                return Err(fail(&format!("the name {name} is used twice")));
            }
            keys.push(ApiKey {
                name: name.into(),
                role,
                digest,
            });
        }
        Ok(ApiKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key `secret` is, if any. Every configured digest is compared, in constant time.
    fn identify(&self, secret: &str) -> Option<&ApiKey> {
        let digest = sha256(secret);
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }
}

/// The line that configures `secret` as a key named `name` with `role`.
pub fn key_line(role: Role, name: &str, secret: &str) -> String {
    let digest: String = sha256(secret).iter().map(|b| format!("{b:02x}")).collect();
    format!("{role} {name} sha256:{digest}")
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

/// Who made a call, as the services see it (in the request's extensions): for audit logs.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
}

impl Caller {
    fn anonymous() -> Caller {
        Caller {
            name: "anonymous".into(),
            role: Role::Admin,
        }
    }

    /// The caller of a request that went through [`AuthLayer`].
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::anonymous)
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The role a call to `path` (`/package.Service/Method`) needs, or `None` if it is open.
fn required_role(path: &str) -> Option<Role> {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if service == proto::matcher_server::SERVICE_NAME {
        Some(Role::Reader)
    } else if service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.") {
        None
    } else {
        Some(Role::Admin)
    }
}

/// Decides a call from its path and `authorization` header.
fn authorize(keys: &ApiKeys, path: &str, authorization: Option<&[u8]>) -> Result<Caller, Status> {
    let Some(needed) = required_role(path) else {
        return Ok(Caller::anonymous());
    };
    if keys.is_empty() {
        return Ok(Caller::anonymous());
    }
    let secret = authorization
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = secret else {
        tracing::warn!(target: "auth", method = path, "call refused: no `authorization: Bearer` key");
        return Err(Status::unauthenticated(
            "an API key is required: send `authorization: Bearer <key>`",
        ));
    };
    let Some(key) = keys.identify(secret) else {
        tracing::warn!(target: "auth", method = path, "call refused: unknown API key");
        return Err(Status::unauthenticated("unknown API key"));
    };
    if key.role < needed {
        tracing::warn!(target: "auth", method = path, key = %key.name, role = %key.role, "call refused: role too low");
        return Err(Status::permission_denied(format!(
            "the key {} is a {} key; this call needs an {needed} key",
            key.name, key.role
        )));
    }
    Ok(Caller {
        name: key.name.clone(),
        role: key.role,
    })
}

/// A tower layer that checks every call's key before the services see it.
#[derive(Clone)]
pub struct AuthLayer {
    keys: Arc<ApiKeys>,
}

impl AuthLayer {
    pub fn new(keys: ApiKeys) -> AuthLayer {
        AuthLayer { keys: Arc::new(keys) }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            keys: self.keys.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    keys: Arc<ApiKeys>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        match authorize(&self.keys, request.uri().path(), authorization) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys::parse(&format!(
            "# two keys\n{}\n{}\n",
            key_line(Role::Reader, "pipeline", "read-secret"),
            key_line(Role::Admin, "ops", "admin-secret")
        ))
        .unwrap()
    }

    const CHECK: &str = "/hashsieve.v1.Matcher/CheckHashes";
    const ADD: &str = "/hashsieve.v1.Banks/AddEntries";

    fn code(result: Result<Caller, Status>) -> tonic::Code {
        result.map_or_else(|status| status.code(), |_| tonic::Code::Ok)
    }

    #[test]
    fn roles_open_the_services_they_should() {
        let keys = keys();
        let bearer = |secret: &str| format!("Bearer {secret}");
        let reader = bearer("read-secret");
        let admin = bearer("admin-secret");
        assert_eq!(
            code(authorize(&keys, CHECK, Some(reader.as_bytes()))),
            tonic::Code::Ok
        );
        assert_eq!(
            code(authorize(&keys, ADD, Some(reader.as_bytes()))),
            tonic::Code::PermissionDenied
        );
        let caller = authorize(&keys, ADD, Some(admin.as_bytes())).unwrap();
        assert_eq!((&*caller.name, caller.role), ("ops", Role::Admin));
        assert_eq!(
            code(authorize(&keys, CHECK, Some(admin.as_bytes()))),
            tonic::Code::Ok
        );
    }

    #[test]
    fn missing_and_unknown_keys_are_unauthenticated_but_health_is_open() {
        let keys = keys();
        assert_eq!(code(authorize(&keys, CHECK, None)), tonic::Code::Unauthenticated);
        assert_eq!(
            code(authorize(&keys, CHECK, Some(b"Bearer guess"))),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(authorize(&keys, CHECK, Some(b"read-secret"))),
            tonic::Code::Unauthenticated,
            "the Bearer scheme is required"
        );
        assert_eq!(
            code(authorize(&keys, "/grpc.health.v1.Health/Check", None)),
            tonic::Code::Ok
        );
        assert_eq!(
            code(authorize(
                &keys,
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None
            )),
            tonic::Code::Ok
        );
        assert_eq!(
            code(authorize(&keys, "/other.Service/Call", None)),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn without_keys_every_call_is_let_through() {
        let caller = authorize(&ApiKeys::default(), ADD, None).unwrap();
        assert_eq!(caller.role, Role::Admin);
    }

    #[test]
    fn key_files_are_checked_line_by_line() {
        let line = key_line(Role::Reader, "a", "s");
        assert!(line.starts_with("reader a sha256:"));
        assert_eq!(
            ApiKeys::parse(&format!("{line}; {}", key_line(Role::Admin, "b", "t")))
                .unwrap()
                .keys
                .len(),
            2
        );
        for (text, expected) in [
            ("writer a sha256:00", "role"),
            ("admin a", "expected"),
            ("admin a sha256:abc", "digest"),
            ("admin a md5:00", "digest"),
        ] {
            let error = ApiKeys::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let twice = format!("{line}\n{line}");
        assert!(ApiKeys::parse(&twice).unwrap_err().contains("twice"));
        // Keys never show in debug output.
        assert!(!format!("{:?}", keys()).contains("sha256"));
    }
}
