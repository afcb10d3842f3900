//! The `dhcp` area rendered as Kea's DHCPv4 config (JSON, `{"Dhcp4": {...}}`). Pure.
//!
//! Subnet ids are the subnet's network address as a number: the same on every node whatever
//! the order of the subnets (Kea keys its leases by subnet id), and distinct because subnets
//! never overlap.

use crate::config::dhcp::{Dhcp, DhcpLocal, Subnet};
use crate::config::dhcp_ha::Ha;
use ipnet::IpNet;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kea's subnet id for a subnet.
pub fn subnet_id(s: &Subnet) -> u32 {
    u32::from(s.subnet.network())
}

fn subnet(s: &Subnet) -> Value {
    let mut options = Vec::new();
    if !s.routers.is_empty() {
        options.push(json!({"name": "routers", "data": join(&s.routers)}));
    }
    if !s.dns_servers.is_empty() {
        options.push(json!({"name": "domain-name-servers", "data": join(&s.dns_servers)}));
    }
    if let Some(d) = &s.domain_name {
        options.push(json!({"name": "domain-name", "data": d}));
    }
    let reservations: Vec<Value> = s
        .reservations
        .iter()
        .map(|r| {
            let mut v = json!({"hw-address": mac(&r.mac), "ip-address": r.address.to_string()});
            if let (Some(h), Some(o)) = (&r.hostname, v.as_object_mut()) {
                o.insert("hostname".into(), json!(h));
            }
            v
        })
        .collect();
    json!({
        "id": subnet_id(s),
        "subnet": s.subnet.to_string(),
        "interface": s.device,
        "pools": s.pools.iter().map(|(a, b)| json!({"pool": format!("{a} - {b}")})).collect::<Vec<_>>(),
        "option-data": options,
        "valid-lifetime": s.lease_time,
        "reservations": reservations,
    })
}

/// Kea's HA hook in hot-standby with the partner, and the lease_cmds hook it needs. HTTP goes
/// over the hook's own listener (multi-threading with `http-dedicated-listener`), so no
/// kea-ctrl-agent is needed. A partner that stops answering for 3 s is taken as down
/// (`max-unacked-clients` 0: the standby does not wait to see clients unanswered).
fn hooks(ha: &Ha, dir: &std::path::Path) -> Value {
    let url = |a: &std::net::SocketAddr| format!("http://{a}/");
    let (this_role, partner_role) = if ha.primary {
        ("primary", "standby")
    } else {
        ("standby", "primary")
    };
    json!([
        {"library": dir.join("libdhcp_lease_cmds.so").display().to_string()},
        {
            "library": dir.join("libdhcp_ha.so").display().to_string(),
            "parameters": {"high-availability": [{
                "this-server-name": ha.this,
                "mode": "hot-standby",
                "heartbeat-delay": 1000,
                "max-response-delay": 3000,
                "max-ack-delay": 1000,
                "max-unacked-clients": 0,
                "sync-timeout": 10000,
                "multi-threading": {
                    "enable-multi-threading": true,
                    "http-dedicated-listener": true,
                    "http-listener-threads": 2,
                    "http-client-threads": 2,
                },
                "peers": [
                    {"name": ha.this, "url": url(&ha.listen), "role": this_role, "auto-failover": true},
                    {"name": ha.partner, "url": url(&ha.partner_address), "role": partner_role, "auto-failover": true},
                ],
            }]},
        },
    ])
}

/// This node's own addresses per logical interface (not VIPs), as the kernel has them.
pub type OwnAddresses = BTreeMap<String, Vec<IpNet>>;

/// Kea's interface entry for a subnet: `DEVICE/ADDRESS` with this node's own address in the
/// subnet, so Kea opens one socket there and not one more on a VIP of the same device (it
/// would take every packet twice, and answer with the VIP as server identifier on one node
/// only); the device alone when the node has no address in the subnet.
fn interface(s: &Subnet, own: &OwnAddresses) -> String {
    let addr = own.get(&s.interface).and_then(|nets| {
        nets.iter().find_map(|n| match n {
            IpNet::V4(v4) if s.subnet.contains(&v4.addr()) => Some(v4.addr()),
            _ => None,
        })
    });
    match addr {
        Some(a) => format!("{}/{a}", s.device),
        None => s.device.clone(),
    }
}

/// The whole Kea config for this node: the area's subnets on this node's devices, and the
/// node-local paths.
pub fn render(dhcp: Option<&Dhcp>, local: &DhcpLocal, own: &OwnAddresses) -> Value {
    let subnets: Vec<&Subnet> = dhcp.map(|d| d.subnets.iter().collect()).unwrap_or_default();
    let mut devices: Vec<String> = subnets.iter().map(|s| interface(s, own)).collect();
    devices.sort_unstable();
    devices.dedup();
    let mut v = json!({
        "Dhcp4": {
            "interfaces-config": {"interfaces": devices},
            "control-socket": {
                "socket-type": "unix",
                "socket-name": local.control_socket.display().to_string(),
            },
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "name": local.lease_file.display().to_string(),
                "lfc-interval": 3600,
            },
            "subnet4": subnets.iter().map(|s| subnet(s)).collect::<Vec<_>>(),
            "loggers": [{
                "name": "kea-dhcp4",
                "output_options": [{"output": "stdout"}],
                "severity": "INFO",
            }],
        }
    });
    if let (Some(ha), Some(d4)) = (&local.ha, v["Dhcp4"].as_object_mut()) {
        d4.insert("hooks-libraries".into(), hooks(ha, &local.hooks_dir));
        d4.insert(
            "multi-threading".into(),
            json!({"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64}),
        );
    }
    v
}

/// The text tandem writes (pretty, with a trailing newline; the same config gives the same
/// bytes, so an unchanged config is not written or reloaded again).
pub fn text(config: &Value) -> String {
    let mut s = serde_json::to_string_pretty(config).unwrap_or_default();
    s.push('\n');
    s
}

/// Kea's answer to a command: `[{"result": 0, "text": ...}]` (a list when it went through
/// the control agent) or the object alone. Ok(text) for result 0, else Err(text).
pub fn answer(raw: &str) -> Result<(String, Value), String> {
    let v: Value =
        serde_json::from_str(raw).map_err(|e| format!("Kea's answer is not JSON: {e}"))?;
    let one = match &v {
        Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let text = one["text"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(500)
        .collect::<String>();
    match one["result"].as_i64() {
        Some(0) => Ok((text, one["arguments"].clone())),
        Some(n) => Err(format!("Kea refused it (result {n}): {text}")),
        None => Err("Kea's answer has no result".into()),
    }
}

/// A name or state from Kea's answer, kept only if it is a plain word (it reaches a terminal).
fn word(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    (!s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    .then(|| s.to_string())
}

/// What `status-get` says of Kea's HA: this server's role, state and the scopes it serves
/// (whose clients it answers), and the partner's last known state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaState {
    pub role: String,
    pub state: String,
    pub scopes: Vec<String>,
    pub partner_state: Option<String>,
    pub partner_in_touch: bool,
    pub communication_interrupted: bool,
}

/// Reads the `arguments` of Kea's answer to `status-get` (Kea 2.2: `high-availability[0]
/// .ha-servers.local` and `.remote`).
pub fn ha_state(args: &Value) -> Result<HaState, String> {
    let ha = &args["high-availability"][0]["ha-servers"];
    let local = &ha["local"];
    let remote = &ha["remote"];
    let state =
        word(&local["state"]).ok_or("Kea's status-get has no HA state (is the HA hook loaded?)")?;
    Ok(HaState {
        role: word(&local["role"]).unwrap_or_default(),
        state,
        scopes: local["scopes"]
            .as_array()
            .map(|a| a.iter().filter_map(word).collect())
            .unwrap_or_default(),
        partner_state: word(&remote["last-state"]),
        partner_in_touch: remote["in-touch"].as_bool().unwrap_or(false),
        communication_interrupted: remote["communication-interrupted"]
            .as_bool()
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dhcp::Reservation;
    use std::path::PathBuf;

    fn local() -> DhcpLocal {
        DhcpLocal {
            config_file: PathBuf::from("/etc/kea/kea-dhcp4.conf"),
            control_socket: PathBuf::from("/run/kea/s"),
            lease_file: PathBuf::from("/var/lib/kea/l.csv"),
            hooks_dir: PathBuf::from("/hooks"),
            ha: None,
        }
    }

    #[test]
    fn a_subnet_renders_as_kea_wants_it() {
        let s = Subnet {
            interface: "lan".into(),
            device: "eth0".into(),
            subnet: "192.0.2.0/24".parse().expect("net"),
            pools: vec![(
                "192.0.2.100".parse().expect("ip"),
                "192.0.2.199".parse().expect("ip"),
            )],
            routers: vec!["192.0.2.1".parse().expect("ip")],
            dns_servers: vec![
                "192.0.2.1".parse().expect("ip"),
                "192.0.2.2".parse().expect("ip"),
            ],
            domain_name: Some("lan.example.org".into()),
            lease_time: 600,
            reservations: vec![Reservation {
                mac: [2, 0, 0, 0, 0, 0x1f],
                address: "192.0.2.20".parse().expect("ip"),
                hostname: Some("printer".into()),
            }],
        };
        let d = Dhcp { subnets: vec![s] };
        let own = OwnAddresses::new();
        let v = render(Some(&d), &local(), &own);
        let d4 = &v["Dhcp4"];
        assert_eq!(d4["interfaces-config"]["interfaces"], json!(["eth0"]));
        // With this node's own address in the subnet (a VIP is not among them): bound there.
        let own2 = OwnAddresses::from([(
            "lan".to_string(),
            vec![
                "2001:db8::2/64".parse().expect("net"),
                "198.51.100.2/24".parse().expect("net"),
                "192.0.2.2/24".parse().expect("net"),
            ],
        )]);
        assert_eq!(
            render(Some(&d), &local(), &own2)["Dhcp4"]["interfaces-config"]["interfaces"],
            json!(["eth0/192.0.2.2"])
        );
        assert_eq!(d4["control-socket"]["socket-name"], "/run/kea/s");
        assert_eq!(d4["lease-database"]["name"], "/var/lib/kea/l.csv");
        let s = &d4["subnet4"][0];
        assert_eq!(s["id"], 0xc000_0200_u32);
        assert_eq!(s["subnet"], "192.0.2.0/24");
        assert_eq!(s["pools"][0]["pool"], "192.0.2.100 - 192.0.2.199");
        assert_eq!(
            s["option-data"][1],
            json!({"name": "domain-name-servers", "data": "192.0.2.1, 192.0.2.2"})
        );
        assert_eq!(
            s["reservations"][0],
            json!({"hw-address": "02:00:00:00:00:1f", "ip-address": "192.0.2.20", "hostname": "printer"})
        );
        assert_eq!(text(&v), text(&render(Some(&d), &local(), &own)));
        let empty = render(None, &local(), &own);
        assert_eq!(empty["Dhcp4"]["subnet4"], json!([]));
        assert!(empty["Dhcp4"].get("hooks-libraries").is_none());
    }

    #[test]
    fn ha_peers_and_roles() {
        let mut l = local();
        l.ha = Some(Ha {
            this: "fw2".into(),
            listen: "203.0.113.2:8001".parse().expect("addr"),
            partner: "fw1".into(),
            partner_address: "203.0.113.1:8001".parse().expect("addr"),
            primary: false,
        });
        let v = render(None, &l, &OwnAddresses::new());
        let hooks = &v["Dhcp4"]["hooks-libraries"];
        assert_eq!(hooks[0]["library"], "/hooks/libdhcp_lease_cmds.so");
        let ha = &hooks[1]["parameters"]["high-availability"][0];
        assert_eq!(ha["this-server-name"], "fw2");
        assert_eq!(ha["mode"], "hot-standby");
        assert_eq!(
            ha["peers"][0],
            json!({"name": "fw2", "url": "http://203.0.113.2:8001/", "role": "standby", "auto-failover": true})
        );
        assert_eq!(ha["peers"][1]["role"], "primary");
        assert_eq!(
            v["Dhcp4"]["multi-threading"]["enable-multi-threading"],
            true
        );
    }

    #[test]
    fn answers() {
        assert_eq!(
            answer(r#"{"result": 0, "text": "ok"}"#).expect("ok").0,
            "ok"
        );
        assert_eq!(
            answer(r#"[{"result": 0, "text": "ok", "arguments": {"a": 1}}]"#)
                .expect("ok")
                .1["a"],
            1
        );
        let e = answer(r#"{"result": 1, "text": "bad pool"}"#).expect_err("refused");
        assert!(e.contains("bad pool"), "{e}");
        assert!(answer("garbage").is_err());
    }

    #[test]
    fn kea_ha_state_is_read() {
        // Kea 2.2's answer to status-get, a primary whose partner is gone.
        let raw = r#"{ "arguments": { "high-availability": [ { "ha-mode": "hot-standby", "ha-servers": { "local": { "role": "primary", "scopes": [ "fw1" ], "state": "partner-down" }, "remote": { "age": 3, "analyzed-packets": 0, "communication-interrupted": true, "connecting-clients": 0, "in-touch": true, "last-scopes": [  ], "last-state": "unavailable", "role": "standby", "unacked-clients": 0, "unacked-clients-left": 1 } } } ], "multi-threading-enabled": true, "pid": 9960, "reload": 3, "uptime": 3 }, "result": 0 }"#;
        let (_, args) = answer(raw).expect("ok");
        assert_eq!(
            ha_state(&args).expect("ha"),
            HaState {
                role: "primary".into(),
                state: "partner-down".into(),
                scopes: vec!["fw1".into()],
                partner_state: Some("unavailable".into()),
                partner_in_touch: true,
                communication_interrupted: true,
            }
        );
        let e = ha_state(&json!({"pid": 1})).expect_err("no ha");
        assert!(e.contains("no HA state"), "{e}");
        let odd =
            json!({"high-availability": [{"ha-servers": {"local": {"state": "x\u{1b}[2J"}}}]});
        assert!(ha_state(&odd).is_err());
    }
}
