//! CARP raw sockets between two namespaces joined by a veth pair (needs root; see
//! `lab::require_netns`).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::time::Duration;

use common::{block_in_ns, ip, join, spawn_in_ns, spawn_in_ns_multi};
use lab::{require_netns, Lab};
use linux::carp_socket::{CARP_GROUP_V4, CARP_GROUP_V6};
use linux::{CarpSocket, LinuxError, Netlink, ReceivedAdvert};

/// A 36-byte CARP advertisement (contents do not matter to the socket layer).
fn advert(tag: u8) -> Vec<u8> {
    let mut p = vec![0x21, 7, 0, 7, 0, 1, 0, 0];
    p.extend_from_slice(&[tag; 28]);
    p
}

async fn recv_timeout(s: &CarpSocket, d: Duration) -> Option<Result<ReceivedAdvert, LinuxError>> {
    tokio::time::timeout(d, s.recv()).await.ok()
}

fn two_hosts(test: &str) -> (Lab, String, String) {
    let (lab, a, b) = common::two_hosts(
        test,
        &["192.0.2.1/24", "2001:db8::1/64"],
        &["192.0.2.2/24", "2001:db8::2/64"],
    );
    let (a, b) = (a.ns().to_owned(), b.ns().to_owned());
    (lab, a, b)
}

#[test]
fn adverts_cross_namespaces_with_ttl_255_on_both_families() {
    if !require_netns() {
        return;
    }
    let (_lab, a, b) = two_hosts("linux_adverts_cross_namespaces");
    // B also has a second interface, x0; its CARP socket must not see what arrives on eth0.
    // (A veth pair inside B: this kernel may have no dummy driver.)
    ip(
        &b,
        &["link", "add", "x0", "type", "veth", "peer", "name", "x1"],
    );
    ip(&b, &["addr", "add", "192.0.2.200/32", "dev", "x0"]);
    ip(&b, &["link", "set", "x0", "up"]);
    ip(&b, &["link", "set", "x1", "up"]);

    // The link-local address appears only once the link has carrier, and stays tentative
    // (duplicate address detection) for a second or so more: open while it may still be.
    let a_tentative = common::wait_link_local(&a, "eth0");
    let b_tentative = common::wait_link_local(&b, "eth0");
    eprintln!("link-local tentative when opened: a={a_tentative} b={b_tentative}");

    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = spawn_in_ns(&b, move || async move {
        let v4 = CarpSocket::open_v4("eth0").expect("open v4 in b");
        let v6 = CarpSocket::open_v6("eth0").expect("open v6 in b");
        let other = CarpSocket::open_v4("x0").expect("open v4 on x0");
        assert_eq!(v4.local_addr(), IpAddr::from(Ipv4Addr::new(192, 0, 2, 2)));
        ready_tx.send(()).expect("ready");
        let got4 = recv_timeout(&v4, Duration::from_secs(10))
            .await
            .expect("IPv4 advert within 10 s")
            .expect("IPv4 recv");
        let got6 = recv_timeout(&v6, Duration::from_secs(10))
            .await
            .expect("IPv6 advert within 10 s")
            .expect("IPv6 recv");
        let leaked = recv_timeout(&other, Duration::from_millis(500)).await;
        (got4, got6, leaked.is_some(), v6.local_addr())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("b opened its sockets");

    // Sender on a multi-thread runtime (the daemon may use either flavour).
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let sender = spawn_in_ns_multi(&a, move || async move {
        let v4 = CarpSocket::open_v4("eth0").expect("open v4 in a");
        let v6 = CarpSocket::open_v6("eth0").expect("open v6 in a");
        assert_eq!(v4.local_addr(), IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)));
        let IpAddr::V6(ll) = v6.local_addr() else {
            panic!("v6 socket with a v4 address")
        };
        assert_eq!(ll.segments()[0] & 0xffc0, 0xfe80, "link-local source {ll}");
        assert_eq!(v4.ifindex(), v6.ifindex());
        // Repeat until B has both (the first IPv6 packets may go out before MLD settles).
        for _ in 0..50 {
            v4.send(&advert(4)).await.expect("send v4");
            v6.send(&advert(6)).await.expect("send v6");
            if done_rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
        }
        (v4.local_addr(), v6.local_addr())
    });
    let (got4, got6, leaked, _b_ll) = join(receiver);
    let _ = done_tx.send(());
    let (a4, a6) = join(sender);

    assert_eq!(got4.src, a4);
    assert_eq!(got4.dst, IpAddr::V4(CARP_GROUP_V4));
    assert_eq!(got4.ttl, 255);
    assert!(got4.ttl_ok());
    assert_eq!(got4.payload, advert(4));

    assert_eq!(got6.src, a6);
    assert_eq!(got6.dst, IpAddr::V6(CARP_GROUP_V6));
    assert_eq!(got6.ttl, 255);
    assert_eq!(got6.payload, advert(6));

    assert!(
        !leaked,
        "a socket bound to x0 saw a packet that arrived on eth0"
    );
}

#[test]
fn a_packet_with_ttl_below_255_is_reported_with_its_ttl() {
    if !require_netns() {
        return;
    }
    let (_lab, a, b) = two_hosts("linux_ttl_below_255");
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = spawn_in_ns(&b, move || async move {
        let v4 = CarpSocket::open_v4("eth0").expect("open v4 in b");
        ready_tx.send(()).expect("ready");
        recv_timeout(&v4, Duration::from_secs(10))
            .await
            .expect("packet within 10 s")
            .expect("recv")
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("ready");
    // A plain raw socket in A sending with multicast TTL 1, as a packet from beyond a router
    // would arrive.
    let sender = std::thread::spawn(move || {
        common::enter(&a);
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .expect("raw socket");
        s.bind_device(Some(b"eth0")).expect("bind device");
        s.set_multicast_ttl_v4(1).expect("ttl 1");
        s.set_multicast_if_v4(&Ipv4Addr::new(192, 0, 2, 1))
            .expect("multicast if");
        let dst = std::net::SocketAddr::from((CARP_GROUP_V4, 0));
        s.send_to(&advert(1), &dst.into()).expect("send");
    });
    join(sender);
    let got = join(receiver);
    assert_eq!(got.ttl, 1);
    assert!(!got.ttl_ok());
    assert_eq!(got.payload, advert(1));
}

#[test]
fn source_address_is_never_a_vip_and_missing_ipv4_is_a_clear_error() {
    if !require_netns() {
        return;
    }
    let (_lab, a, _b) = common::two_hosts("linux_source_never_vip", &[], &[]);
    let ns = a.ns().to_owned();
    let ns2 = ns.clone();
    block_in_ns(&ns, move || async move {
        let err = CarpSocket::open_v4("eth0").expect_err("no IPv4 address yet");
        assert!(
            matches!(err, LinuxError::NoIpv4Address { ref ifname } if ifname == "eth0"),
            "{err}"
        );
        assert!(err.to_string().contains("eth0"), "{err}");
        let err = CarpSocket::open_v4("nosuch0").expect_err("no such interface");
        assert!(matches!(err, LinuxError::NoSuchInterface { .. }), "{err}");
        assert_eq!(err.errno(), Some(libc::ENODEV));

        // The VIP comes first and so becomes the primary of 192.0.2.0/24; the node's own
        // address added afterwards is a secondary. The socket must still pick the real one.
        let nl = Netlink::new().await.expect("netlink");
        let link = nl.link("eth0").await.expect("link");
        nl.add_address(link.index, Ipv4Addr::new(192, 0, 2, 1).into(), 24)
            .await
            .expect("add VIP");
        let err = CarpSocket::open_v4("eth0").expect_err("only a VIP");
        assert!(matches!(err, LinuxError::NoIpv4Address { .. }), "{err}");
        ip(&ns2, &["addr", "add", "192.0.2.5/24", "dev", "eth0"]);
        let s = CarpSocket::open_v4("eth0").expect("open");
        assert_eq!(s.local_addr(), IpAddr::from(Ipv4Addr::new(192, 0, 2, 5)));

        // IPv6 picks the link-local address, never a global or a VIP.
        nl.add_address(
            link.index,
            "2001:db8::1".parse::<Ipv6Addr>().expect("literal").into(),
            64,
        )
        .await
        .expect("add v6 VIP");
        let s6 = CarpSocket::open_v6("eth0").expect("open v6");
        let IpAddr::V6(src) = s6.local_addr() else {
            panic!("v4 address on a v6 socket")
        };
        assert_eq!(src.segments()[0] & 0xffc0, 0xfe80, "{src}");
    });
}

#[test]
fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    if !require_netns() {
        return;
    }
    let (_lab, a, _b) = common::two_hosts("linux_open_outside_runtime", &["192.0.2.1/24"], &[]);
    let ns = a.ns().to_owned();
    join(std::thread::spawn(move || {
        common::enter(&ns);
        let err = CarpSocket::open_v4("eth0").expect_err("no runtime");
        assert!(matches!(err, LinuxError::NoRuntime { .. }), "{err}");
    }));
}
