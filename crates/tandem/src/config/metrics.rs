//! The node-local `[metrics]` table: the HTTP listener for Prometheus metrics and the status
//! page (optional; never synced).

use super::Errors;
use serde::Deserialize;
use std::net::SocketAddr;
use toml::Spanned;

/// The port the README suggests (`127.0.0.1:9720`).
pub const METRICS_PORT: u16 = 9720;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default)]
    enabled: Option<bool>,
    listen: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Where GET /metrics and GET / are served: `127.0.0.1:9720`, `[::1]:9720`, ...
    pub listen: SocketAddr,
}

pub fn metrics(errs: &mut Errors<'_>, raw: &Spanned<RawMetrics>) -> MetricsSettings {
    let r = raw.get_ref();
    let text = r.listen.get_ref();
    let listen = match text.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            errs.at(
                r.listen.span(),
                format!("metrics.listen: {text:?} needs a port other than 0"),
            );
            a
        }
        Ok(a) => a,
        Err(_) => {
            errs.at(
                r.listen.span(),
                format!(
                    "metrics.listen: {text:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:{METRICS_PORT}\" or \"[::1]:{METRICS_PORT}\")"
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], METRICS_PORT))
        }
    };
    MetricsSettings {
        enabled: r.enabled.unwrap_or(true),
        listen,
    }
}
