//! Every validation error: the message names the problem and the span points at the line
//! marked `# <- error` in the case's config.

mod common;

use firewall::ConfigError;

const HEADER: &str = r#"[node]
name = "fw1"

[interfaces]
lan = "eth0"
wan = "eth1"

[[vips]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.1/24"]

[[vips]]
vhid = 8
interface = "wan"
addresses = ["198.51.100.1/24", "2001:db8:2::1/64"]

[test.addresses]
lan = ["192.0.2.2/24"]
wan = ["198.51.100.2/24"]
"#;

/// (name, config after HEADER, expected message). The error must be on the marked line.
const CASES: &[(&str, &str, &str)] = &[
    (
        "toml syntax",
        "[[rules]]\ninterface = \"lan # <- error\n",
        "invalid basic string",
    ),
    (
        "unknown key in a rule (typo)",
        "[[rules]]\ninterface = \"lan\"\nactoin = \"pass\" # <- error\n",
        "unknown field `actoin`",
    ),
    (
        "unknown key in an alias",
        "[[aliases]]\nname = \"a\"\ntype = \"host\"\nentries = []\ndescripton = \"x\" # <- error\n",
        "unknown field `descripton`",
    ),
    (
        "unknown key in nat",
        "[nat]\noutbund = [] # <- error\n",
        "unknown field `outbund`",
    ),
    (
        "bad action",
        "[[rules]]\ninterface = \"lan\"\naction = \"allow\" # <- error\n",
        "unknown variant `allow`",
    ),
    (
        "bad type",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nlog = \"yes\" # <- error\n",
        "invalid type",
    ),
    (
        "missing action",
        "[[rules]] # <- error\ninterface = \"lan\"\n",
        "missing field `action`",
    ),
    (
        "unknown alias in a rule",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\ndestination = \"nosuch\" # <- error\n",
        "unknown alias `nosuch` in destination",
    ),
    (
        "unknown alias in a list",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = [\n  \"192.0.2.9\",\n  \"nosuch\", # <- error\n]\n",
        "unknown alias `nosuch` in source",
    ),
    (
        "unknown alias in an alias",
        "[[aliases]]\nname = \"a\"\ntype = \"network\"\nentries = [\"10.0.0.0/8\", \"nosuch\"] # <- error\n",
        "unknown alias `nosuch` in alias `a`",
    ),
    (
        "alias loop",
        "[[aliases]]\nname = \"a\"\ntype = \"network\"\nentries = [\"b\"]\n[[aliases]]\nname = \"b\"\ntype = \"network\"\nentries = [\"10.0.0.1\", \"a\"] # <- error\n",
        "alias loop: a -> b -> a",
    ),
    (
        "alias naming itself",
        "[[aliases]]\nname = \"a\"\ntype = \"port\"\nentries = [80, \"a\"] # <- error\n",
        "alias loop: a -> a",
    ),
    (
        "port alias as an address",
        "[[aliases]]\nname = \"web\"\ntype = \"port\"\nentries = [80]\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = \"web\" # <- error\n",
        "alias `web` is a port alias and cannot be used as source",
    ),
    (
        "address alias as a port",
        "[[aliases]]\nname = \"hosts\"\ntype = \"host\"\nentries = [\"192.0.2.9\"]\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"tcp\"\ndestination_port = \"hosts\" # <- error\n",
        "alias `hosts` is a host alias and cannot be used as destination_port",
    ),
    (
        "network alias inside a host alias",
        "[[aliases]]\nname = \"n\"\ntype = \"network\"\nentries = [\"10.0.0.0/8\"]\n[[aliases]]\nname = \"h\"\ntype = \"host\"\nentries = [\"n\"] # <- error\n",
        "alias `n` is a network alias; host alias `h` can only contain host aliases",
    ),
    (
        "port alias inside a network alias",
        "[[aliases]]\nname = \"p\"\ntype = \"port\"\nentries = [22]\n[[aliases]]\nname = \"n\"\ntype = \"network\"\nentries = [\"p\"] # <- error\n",
        "alias `p` is a port alias; network alias `n` can only contain host or network aliases",
    ),
    (
        "network in a host alias",
        "[[aliases]]\nname = \"h\"\ntype = \"host\"\nentries = [\"10.0.0.0/8\"] # <- error\n",
        "`10.0.0.0/8` is a network; host alias `h` holds addresses and ranges only",
    ),
    (
        "number in an address alias",
        "[[aliases]]\nname = \"h\"\ntype = \"host\"\nentries = [80] # <- error\n",
        "host alias `h` cannot hold the number 80",
    ),
    (
        "interface keyword in an alias",
        "[[aliases]]\nname = \"h\"\ntype = \"network\"\nentries = [\"lan:network\"] # <- error\n",
        "`lan:network` cannot be used in an alias",
    ),
    (
        "invalid alias name",
        "[[aliases]]\nname = \"web-servers\" # <- error\ntype = \"host\"\nentries = []\n",
        "invalid alias name `web-servers`",
    ),
    (
        "alias named any",
        "[[aliases]]\nname = \"any\" # <- error\ntype = \"host\"\nentries = []\n",
        "`any` is reserved",
    ),
    (
        "duplicate alias",
        "[[aliases]]\nname = \"a\"\ntype = \"host\"\nentries = []\n[[aliases]]\nname = \"a\" # <- error\ntype = \"port\"\nentries = []\n",
        "duplicate alias name `a`",
    ),
    (
        "bad CIDR",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = \"192.0.2.0/33\" # <- error\n",
        "invalid network `192.0.2.0/33`",
    ),
    (
        "bad CIDR in an alias",
        "[[aliases]]\nname = \"n\"\ntype = \"network\"\nentries = [\"10.0.0.0/8\", \"10.0.0/8\"] # <- error\n",
        "invalid network `10.0.0/8`",
    ),
    (
        "bad address",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\ndestination = \"192.0.2.300\" # <- error\n",
        "invalid address `192.0.2.300`",
    ),
    (
        "reversed address range",
        "[[aliases]]\nname = \"h\"\ntype = \"host\"\nentries = [\"192.0.2.20-192.0.2.10\"] # <- error\n",
        "address range `192.0.2.20-192.0.2.10` ends before it starts",
    ),
    (
        "port out of range",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"tcp\"\ndestination_port = 70000 # <- error\n",
        "port 70000 out of range (1-65535)",
    ),
    (
        "port zero in an alias",
        "[[aliases]]\nname = \"p\"\ntype = \"port\"\nentries = [\"0\"] # <- error\n",
        "port `0` out of range (1-65535)",
    ),
    (
        "bad port",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"udp\"\nsource_port = \"80-http\" # <- error\n",
        "invalid port `80-http`",
    ),
    (
        "reversed port range",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"udp\"\ndestination_port = \"90-80\" # <- error\n",
        "port range `90-80` ends before it starts",
    ),
    (
        "port without tcp or udp",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\ndestination_port = 22 # <- error\n",
        "destination_port needs protocol tcp, udp or tcp/udp (this rule's protocol is any)",
    ),
    (
        "port with icmp",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"icmp\"\nsource_port = 22 # <- error\n",
        "source_port needs protocol tcp, udp or tcp/udp (this rule's protocol is icmp)",
    ),
    (
        "icmp with inet6",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"icmp\" # <- error\nfamily = \"inet6\"\n",
        "protocol icmp is IPv4 only",
    ),
    (
        "IPv6 address in an inet rule",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nfamily = \"inet\"\nsource = \"2001:db8::1\" # <- error\n",
        "`2001:db8::1` is an IPv6 address but the rule's family is inet (IPv4)",
    ),
    (
        "IPv6 address with icmp",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nprotocol = \"icmp\"\ndestination = \"2001:db8::1\" # <- error\n",
        "`2001:db8::1` is an IPv6 address but protocol icmp is IPv4 only",
    ),
    (
        "any mixed into a list",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = [\"192.0.2.9\", \"any\"] # <- error\n",
        "\"any\" cannot be combined with other entries in source",
    ),
    (
        "empty address list",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = [] # <- error\n",
        "source is an empty list",
    ),
    (
        "unknown interface in a rule",
        "[[rules]]\ninterface = \"dmz\" # <- error\naction = \"pass\"\n",
        "unknown interface `dmz` (this node's interfaces: lan, wan)",
    ),
    (
        "unknown interface in a keyword",
        "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\ndestination = \"dmz:network\" # <- error\n",
        "unknown interface `dmz` in `dmz:network`",
    ),
    (
        "unknown interface in outbound NAT",
        "[[nat.outbound]]\ninterface = \"dmz\" # <- error\ntranslation = \"198.51.100.1\"\n",
        "unknown interface `dmz`",
    ),
    (
        "outbound NAT to a foreign address",
        "[[nat.outbound]]\ninterface = \"wan\"\ntranslation = \"198.51.100.99\" # <- error\n",
        "translation 198.51.100.99 is not a VIP or address of interface wan",
    ),
    (
        "outbound NAT to another interface's VIP",
        "[[nat.outbound]]\ninterface = \"wan\"\ntranslation = \"192.0.2.1\" # <- error\n",
        "translation 192.0.2.1 is not a VIP or address of interface wan",
    ),
    (
        "outbound NAT to a bad address",
        "[[nat.outbound]]\ninterface = \"wan\"\ntranslation = \"vip\" # <- error\n",
        "invalid translation address `vip`",
    ),
    (
        "outbound NAT source of the other family",
        "[[nat.outbound]]\ninterface = \"wan\"\nsource = \"2001:db8:1::/64\" # <- error\ntranslation = \"198.51.100.1\"\n",
        "`2001:db8:1::/64` is an IPv6 address but the translation address is IPv4",
    ),
    (
        "port forward to a foreign address",
        "[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"203.0.113.1\" # <- error\nprotocol = \"tcp\"\nport = 80\ntarget = \"192.0.2.10\"\n",
        "destination 203.0.113.1 is not a VIP or address of interface wan",
    ),
    (
        "port forward with icmp",
        "[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"198.51.100.1\"\nprotocol = \"icmp\" # <- error\nport = 80\ntarget = \"192.0.2.10\"\n",
        "a port forward needs protocol tcp, udp or tcp/udp, not icmp",
    ),
    (
        "port forward of any port",
        "[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"198.51.100.1\"\nprotocol = \"tcp\"\nport = \"any\" # <- error\ntarget = \"192.0.2.10\"\n",
        "a port forward needs a port",
    ),
    (
        "port forward target_port with a range",
        "[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"198.51.100.1\"\nprotocol = \"tcp\"\nport = \"80-90\"\ntarget = \"192.0.2.10\"\ntarget_port = 8080 # <- error\n",
        "target_port needs `port` to be a single port",
    ),
    (
        "port forward target of the other family",
        "[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"198.51.100.1\"\nprotocol = \"tcp\"\nport = 80\ntarget = \"2001:db8:1::10\" # <- error\n",
        "target 2001:db8:1::10 is IPv6 but destination 198.51.100.1 is IPv4",
    ),
    (
        "overlapping port forwards",
        "[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"198.51.100.1\"\nprotocol = \"tcp/udp\"\nport = \"80-90\"\ntarget = \"192.0.2.10\"\n[[nat.port_forward]]\ninterface = \"wan\"\ndestination = \"198.51.100.1\"\nprotocol = \"tcp\"\nport = 85 # <- error\ntarget = \"192.0.2.11\"\n",
        "port forward overlaps port forward 1",
    ),
    (
        "1:1 NAT to a foreign address",
        "[[nat.one_to_one]]\ninterface = \"wan\"\nexternal = \"198.51.100.77\" # <- error\ninternal = \"192.0.2.10\"\n",
        "external 198.51.100.77 is not a VIP or address of interface wan",
    ),
    (
        "1:1 NAT mapped twice",
        "[[nat.one_to_one]]\ninterface = \"wan\"\nexternal = \"198.51.100.1\"\ninternal = \"192.0.2.10\"\n[[nat.one_to_one]]\ninterface = \"wan\"\nexternal = \"198.51.100.1\" # <- error\ninternal = \"192.0.2.11\"\n",
        "external address 198.51.100.1 is already mapped by 1:1 NAT 1",
    ),
    (
        "gateway off the connected networks",
        "[[gateways]]\nname = \"isp\"\ninterface = \"wan\"\naddress = \"203.0.113.1\" # <- error\n",
        "gateway isp: 203.0.113.1 is not on a connected network of interface wan (connected: 198.51.100.0/24, 2001:db8:2::/64)",
    ),
    (
        "gateway is our own address",
        "[[gateways]]\nname = \"isp\"\ninterface = \"wan\"\naddress = \"198.51.100.2\" # <- error\n",
        "gateway isp: 198.51.100.2 is this node's own address on wan",
    ),
    (
        "gateway on an unknown interface",
        "[[gateways]]\nname = \"isp\"\ninterface = \"dmz\" # <- error\naddress = \"198.51.100.254\"\n",
        "unknown interface `dmz`",
    ),
    (
        "duplicate gateway",
        "[[gateways]]\nname = \"isp\"\ninterface = \"wan\"\naddress = \"198.51.100.254\"\n[[gateways]]\nname = \"isp\" # <- error\ninterface = \"wan\"\naddress = \"198.51.100.253\"\n",
        "duplicate gateway name `isp`",
    ),
    (
        "route via an unknown gateway",
        "[[routes]]\nnetwork = \"10.0.0.0/8\"\ngateway = \"nosuch\" # <- error\n",
        "route via unknown gateway `nosuch`",
    ),
    (
        "route with a bad network",
        "[[gateways]]\nname = \"isp\"\ninterface = \"wan\"\naddress = \"198.51.100.254\"\n[[routes]]\nnetwork = \"10.0.0.0/40\" # <- error\ngateway = \"isp\"\n",
        "invalid route network `10.0.0.0/40`",
    ),
    (
        "duplicate route",
        "[[gateways]]\nname = \"isp\"\ninterface = \"wan\"\naddress = \"198.51.100.254\"\n[[routes]]\nnetwork = \"10.0.0.0/8\"\ngateway = \"isp\"\n[[routes]]\nnetwork = \"10.1.2.3/8\" # <- error\ngateway = \"isp\"\n",
        "duplicate route to 10.0.0.0/8 (also route 1)",
    ),
    (
        "route family differs from its gateway",
        "[[gateways]]\nname = \"isp\"\ninterface = \"wan\"\naddress = \"198.51.100.254\"\n[[routes]]\nnetwork = \"2001:db8:9::/48\"\ngateway = \"isp\" # <- error\n",
        "route to 2001:db8:9::/48 (IPv6) via gateway isp at 198.51.100.254 (IPv4)",
    ),
];

fn errors_of(text: &str) -> Vec<ConfigError> {
    match firewall::parse_areas(text) {
        Err(e) => e,
        Ok(areas) => {
            let ctx = common::context(text);
            let v = firewall::validate(&areas, &ctx).err().unwrap_or_default();
            // render reports exactly what validate reports.
            let r = firewall::render(&areas, &ctx).err().unwrap_or_default();
            assert_eq!(v, r, "render and validate disagree");
            v
        }
    }
}

#[test]
fn every_error_names_the_problem_and_its_line() {
    let mut failures = Vec::new();
    for (name, tail, expected) in CASES {
        let text = format!("{HEADER}{tail}");
        let line = text
            .lines()
            .position(|l| l.contains("# <- error"))
            .map(|i| i + 1)
            .expect("case marks its error line");
        let errors = errors_of(&text);
        let Some(first) = errors.first() else {
            failures.push(format!("{name}: no error"));
            continue;
        };
        let shown = first.located("fw.toml", &text);
        if !first.message.contains(expected) {
            failures.push(format!("{name}: message `{shown}` lacks `{expected}`"));
        }
        match first.line_col(&text) {
            Some((l, _)) if l == line => {}
            other => failures.push(format!(
                "{name}: `{shown}` at {other:?}, expected line {line}"
            )),
        }
        if !shown.starts_with(&format!("fw.toml:{line}:")) {
            failures.push(format!("{name}: located as `{shown}`"));
        }
        if errors.len() != 1 {
            failures.push(format!("{name}: expected one error, got {errors:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn translation_to_an_interface_without_ipv4() {
    let text = r#"
[interfaces]
wan = "eth1"
[[nat.outbound]]
interface = "wan"
translation = "interface"
"#;
    let e = errors_of(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].message,
        "interface wan has no IPv4 address on this node to translate to"
    );
    assert_eq!(e[0].line_col(text), Some((6, 15)));
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = format!(
        "{HEADER}[[rules]]\ninterface = \"dmz\"\naction = \"pass\"\n[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = \"nosuch\"\n[[routes]]\nnetwork = \"10.0.0.0/8\"\ngateway = \"none\"\n"
    );
    let e = errors_of(&text);
    let msgs: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(e.len(), 3, "{msgs:?}");
    assert!(msgs[0].contains("unknown interface `dmz`"));
    assert!(msgs[1].contains("unknown alias `nosuch`"));
    assert!(msgs[2].contains("unknown gateway `none`"));
}

#[test]
fn disabled_items_are_validated_too() {
    let text = format!(
        "{HEADER}[[rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = \"nosuch\"\nenabled = false\n"
    );
    assert_eq!(errors_of(&text).len(), 1);
}

#[test]
fn deep_alias_nesting_is_an_error_not_a_crash() {
    let mut text = String::from(HEADER);
    for i in 0..100 {
        let entry = if i == 99 {
            "\"10.0.0.1\"".to_owned()
        } else {
            format!("\"a{}\"", i + 1)
        };
        text.push_str(&format!(
            "[[aliases]]\nname = \"a{i}\"\ntype = \"network\"\nentries = [{entry}]\n"
        ));
    }
    let e = errors_of(&text);
    assert!(!e.is_empty());
    assert!(e[0].message.contains("nested more than 32 deep"), "{e:?}");
}

#[test]
fn bad_device_names_in_the_context_are_refused() {
    let text = "[[rules]]\ninterface = \"lan\"\naction = \"pass\"\n";
    let areas = firewall::parse_areas(text).expect("parses");
    let mut ctx = firewall::NodeContext::default();
    ctx.interfaces.insert("lan".into(), "eth0\" accept".into());
    let e = firewall::validate(&areas, &ctx).expect_err("refused");
    assert!(e[0].message.contains("not a usable Linux interface name"));
    assert_eq!(e[0].span, None);
}
