//! The shared credentials of config sync: what a primary sends (HTTP Basic or a bearer token)
//! and what a peer accepts, compared in constant time. Pure: no I/O.

use subtle::ConstantTimeEq;

/// The credentials a node accepts (and sends as a primary).
#[derive(Clone, Default)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal in constant time (both sides hashed first, so lengths leak nothing either).
fn same(a: &[u8], b: &[u8]) -> bool {
    digest(a).ct_eq(&digest(b)).into()
}

impl Credentials {
    /// The `Authorization` header a client sends: Basic when a user and password are set,
    /// else Bearer with the token.
    pub fn header(&self) -> Option<String> {
        use base64::Engine as _;
        match (&self.user, &self.password, &self.token) {
            (Some(u), Some(p), _) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            (_, _, Some(t)) => Some(format!("Bearer {t}")),
            _ => None,
        }
    }

    /// Checks an `Authorization` header; the error says why (for the log, not the client).
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), &'static str> {
        use base64::Engine as _;
        let Some(h) = header else {
            return Err("no credentials");
        };
        let h = std::str::from_utf8(h).map_err(|_| "unreadable Authorization header")?;
        if let Some(b64) = h.strip_prefix("Basic ") {
            let (Some(user), Some(password)) = (&self.user, &self.password) else {
                return Err("Basic credentials, but this node takes a token");
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| "bad Basic credentials encoding")?;
            let colon = raw
                .iter()
                .position(|b| *b == b':')
                .ok_or("bad Basic credentials (no ':')")?;
            let (u, p) = (&raw[..colon], &raw[colon + 1..]);
            // Both compared, always, so timing does not tell which one was wrong.
            let ok_user = same(u, user.as_bytes());
            let ok_password = same(p, password.as_bytes());
            if ok_user & ok_password {
                Ok(())
            } else {
                Err("wrong user or password")
            }
        } else if let Some(t) = h.strip_prefix("Bearer ") {
            let Some(token) = &self.token else {
                return Err("a token, but this node takes a user and password");
            };
            if same(t.trim().as_bytes(), token.as_bytes()) {
                Ok(())
            } else {
                Err("wrong token")
            }
        } else {
            Err("unknown authorization scheme")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_are_checked() {
        let c = Credentials {
            user: Some("sync".into()),
            password: Some("pw".into()),
            token: None,
        };
        let h = c.header().expect("header");
        assert_eq!(c.check(Some(h.as_bytes())), Ok(()));
        let wrong = Credentials {
            password: Some("px".into()),
            ..c.clone()
        };
        assert_eq!(
            c.check(wrong.header().as_deref().map(str::as_bytes)),
            Err("wrong user or password")
        );
        assert_eq!(c.check(None), Err("no credentials"));
        assert_eq!(
            c.check(Some(b"Bearer abc")),
            Err("a token, but this node takes a user and password")
        );
        assert_eq!(
            c.check(Some(b"Basic !!!")),
            Err("bad Basic credentials encoding")
        );
        let t = Credentials {
            token: Some("tok".into()),
            ..Default::default()
        };
        assert_eq!(t.check(Some(b"Bearer tok")), Ok(()));
        assert_eq!(t.check(Some(b"Bearer tok2")), Err("wrong token"));
        assert!(!format!("{c:?}").contains("pw"));
    }
}
