//! Real traffic through a rendered ruleset: client — fw — server in three network namespaces.
//! Proves the semantics (pass, block, reject, outbound NAT, port forward, stateful: a mid-stream
//! TCP packet without state is dropped). Needs root, ip, nft and python3; skipped without them
//! unless CI == "true".

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn runnable() -> bool {
    common::runnable(
        "traffic test",
        &[("nft", "--version"), ("ip", "-V"), ("python3", "--version")],
    )
}

/// The namespaces and background processes of one test; all removed on drop.
struct Lab {
    prefix: String,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.prefix)
    }
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn exec(&self, n: &str, args: &[&str]) -> String {
        let ns = self.ns(n);
        let mut v = vec!["ip", "netns", "exec", ns.as_str()];
        v.extend_from_slice(args);
        self.run(&v)
    }
    /// A TCP server answering `from <peer address>` to every connection.
    fn serve(&mut self, n: &str, port: u16) {
        let code = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen()\nprint('ready',flush=True)\nwhile True:\n c,a=s.accept()\n c.sendall(('from '+a[0]).encode())\n c.close()\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(n), "python3", "-c", &code])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        let out = child.stdout.take().expect("server stdout");
        self.children.push(child);
        // Wait until it listens.
        BufReader::new(out)
            .read_line(&mut line)
            .expect("server starts");
        assert_eq!(line.trim(), "ready", "server on port {port} did not start");
    }
    /// Connect and return the server's answer, `refused` or `timeout`.
    fn connect(&self, n: &str, addr: &str, port: u16) -> String {
        let code = format!(
            "import socket\ntry:\n s=socket.create_connection(('{addr}',{port}),timeout=1.5)\n print(s.recv(100).decode())\nexcept ConnectionRefusedError:\n print('refused')\nexcept OSError:\n print('timeout')\n"
        );
        self.exec(n, &["python3", "-c", &code]).trim().to_owned()
    }
    /// Send one bare TCP segment with `flags` (no connection behind it).
    fn segment(&self, n: &str, src: &str, dst: &str, flags: u8) {
        let code = format!(
            "import socket,struct\ndef cs(b):\n s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return (~s)&0xffff\nh=struct.pack('!HHIIBBHHH',40000,80,12345,67890,5<<4,{flags},65535,0,0)\np=socket.inet_aton('{src}')+socket.inet_aton('{dst}')+struct.pack('!BBH',0,6,len(h))\nh=h[:16]+struct.pack('!H',cs(p+h))+h[18:]\nsocket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_TCP).sendto(h,('{dst}',0))\n"
        );
        self.exec(n, &["python3", "-c", &code]);
    }
    fn default_block_packets(&self) -> u64 {
        self.chain_default_block("forward")
    }
    fn chain_default_block(&self, chain: &str) -> u64 {
        let chain = self.exec("f", &["nft", "list", "chain", "inet", "tandem", chain]);
        chain
            .lines()
            .find(|l| l.contains("default block"))
            .and_then(|l| l.split("packets ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .expect("default block counter")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["c", "f", "s"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .output();
        }
    }
}

/// client (c, 192.0.2.20) — fw (f: eth0 192.0.2.1, eth1 198.51.100.1) — server (s, 198.51.100.20).
fn wire(lab: &Lab) {
    let (c, f, s) = (lab.ns("c"), lab.ns("f"), lab.ns("s"));
    for n in [&c, &f, &s] {
        lab.run(&["ip", "netns", "add", n]);
        lab.run(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    lab.run(&[
        "ip", "link", "add", "cv", "netns", &c, "type", "veth", "peer", "name", "eth0", "netns", &f,
    ]);
    lab.run(&[
        "ip", "link", "add", "sv", "netns", &s, "type", "veth", "peer", "name", "eth1", "netns", &f,
    ]);
    for (n, dev, addr) in [
        (&c, "cv", "192.0.2.20/24"),
        (&f, "eth0", "192.0.2.1/24"),
        (&f, "eth1", "198.51.100.1/24"),
        (&s, "sv", "198.51.100.20/24"),
    ] {
        lab.run(&["ip", "-n", n, "addr", "add", addr, "dev", dev]);
        lab.run(&["ip", "-n", n, "link", "set", dev, "up"]);
    }
    lab.run(&[
        "ip",
        "-n",
        &c,
        "route",
        "add",
        "default",
        "via",
        "192.0.2.1",
    ]);
    // The server can route to the inside (so "blocked" means the firewall, not routing).
    lab.run(&[
        "ip",
        "-n",
        &s,
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "198.51.100.1",
    ]);
}

const CONFIG: &str = r#"
[interfaces]
lan = "eth0"
wan = "eth1"

[[rules]]
interface = "lan"
action = "reject"
protocol = "tcp"
destination_port = 81

[[rules]]
interface = "lan"
action = "pass"
source = "lan:network"

[[nat.outbound]]
interface = "wan"
source = "lan:network"
translation = "interface"

[[nat.port_forward]]
interface = "wan"
destination = "198.51.100.1"
protocol = "tcp"
port = 2222
target = "192.0.2.20"
target_port = 22
"#;

#[test]
fn rendered_ruleset_filters_and_translates_real_traffic() {
    if !runnable() {
        return;
    }
    let mut lab = Lab {
        prefix: format!("tfw{}", std::process::id()),
        children: Vec::new(),
    };
    wire(&lab);
    lab.exec("f", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    let areas = firewall::parse_areas(CONFIG).expect("parses");
    let mut ctx = firewall::NodeContext::default();
    ctx.interfaces.insert("lan".into(), "eth0".into());
    ctx.interfaces.insert("wan".into(), "eth1".into());
    let net = |s: &str| vec![s.parse().expect("cidr")];
    ctx.interface_addrs
        .insert("lan".into(), net("192.0.2.1/24"));
    ctx.interface_addrs
        .insert("wan".into(), net("198.51.100.1/24"));
    let ruleset = firewall::render(&areas, &ctx).expect("valid");
    let file = std::env::temp_dir().join(format!("{}.nft", lab.prefix));
    std::fs::write(&file, &ruleset.nft).expect("write ruleset");
    let path = file.to_str().expect("utf-8 path").to_owned();
    lab.exec("f", &["nft", "-f", &path]);
    let _ = std::fs::remove_file(&file);

    lab.serve("s", 80);
    lab.serve("s", 81);
    lab.serve("c", 22);

    // Pass + outbound NAT: the server sees the firewall's wan address.
    assert_eq!(lab.connect("c", "198.51.100.20", 80), "from 198.51.100.1");
    // Reject: a TCP reset, not a timeout.
    assert_eq!(lab.connect("c", "198.51.100.20", 81), "refused");
    // Default block: nothing passes in on wan.
    assert_eq!(lab.connect("s", "192.0.2.20", 22), "timeout");
    // Port forward on the wan address reaches the inside host (not NATed on the way in).
    assert_eq!(lab.connect("s", "198.51.100.1", 2222), "from 198.51.100.20");

    // Stateful: a mid-stream TCP packet (ACK) with no state is dropped even though a pass
    // rule matches its addresses; a SYN of the same flow is passed.
    let before = lab.default_block_packets();
    lab.segment("c", "192.0.2.20", "198.51.100.20", 0x10);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        lab.default_block_packets(),
        before + 1,
        "mid-stream ACK not dropped"
    );
    lab.segment("c", "192.0.2.20", "198.51.100.20", 0x02);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.default_block_packets(), before + 1, "SYN dropped");
}

/// An attacker on an interface without a VIP sends CARP (IP protocol 112) to the firewall: the
/// ruleset drops it before any socket sees it. On the VIP's interface the same packet passes.
#[test]
fn carp_is_dropped_on_interfaces_without_a_vip() {
    if !runnable() {
        return;
    }
    let lab = Lab {
        prefix: format!("tfc{}", std::process::id()),
        children: Vec::new(),
    };
    wire(&lab);
    let mut ctx = firewall::NodeContext::default();
    ctx.interfaces.insert("lan".into(), "eth0".into());
    ctx.interfaces.insert("wan".into(), "eth1".into());
    ctx.vips
        .push(("lan".into(), "192.0.2.100/24".parse().expect("cidr")));
    let ruleset = firewall::render(&firewall::Areas::default(), &ctx).expect("valid");
    let file = std::env::temp_dir().join(format!("{}.nft", lab.prefix));
    std::fs::write(&file, &ruleset.nft).expect("write ruleset");
    let path = file.to_str().expect("utf-8 path").to_owned();
    lab.exec("f", &["nft", "-f", &path]);
    let _ = std::fs::remove_file(&file);

    // A 36-byte CARP-looking payload, sent as IP protocol 112 to the firewall's own address.
    let carp = |n: &str, dst: &str| {
        let code = format!(
            "import socket\nsocket.socket(socket.AF_INET,socket.SOCK_RAW,112).sendto(bytes([0x21,7,0,7,0,1])+bytes(30),('{dst}',0))\n"
        );
        lab.exec(n, &["python3", "-c", &code]);
        std::thread::sleep(Duration::from_millis(200));
    };
    let before = lab.chain_default_block("input");
    carp("c", "192.0.2.1");
    assert_eq!(
        lab.chain_default_block("input"),
        before,
        "CARP on the VIP's interface (lan) was dropped"
    );
    carp("s", "198.51.100.1");
    assert_eq!(
        lab.chain_default_block("input"),
        before + 1,
        "CARP on wan, which carries no VIP, was accepted"
    );
}
