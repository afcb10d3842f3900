//! rtnetlink in a namespace: links, VIP addresses, the link watcher (needs root; see
//! `lab::require_netns`).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{block_in_ns, ip, parse_mac};
use lab::{require_netns, Lab};
use linux::{LinkEvent, LinkWatcher, LinuxError, Netlink};

#[test]
fn link_lookup_and_address_add_del_seen_by_ip() {
    if !require_netns() {
        return;
    }
    let (_lab, a, _b) = common::two_hosts(
        "linux_netlink_addresses",
        &["192.0.2.1/24", "2001:db8::1/64"],
        &["192.0.2.2/24"],
    );
    let mac = parse_mac(&a.mac("eth0").expect("mac"));
    assert!(lab::wait_until(Duration::from_secs(5), || a.has_carrier("eth0")));
    let ns = a.ns().to_owned();
    let host = a.clone();
    block_in_ns(&ns.clone(), move || async move {
        let nl = Netlink::new().await.expect("netlink");
        let link = nl.link("eth0").await.expect("eth0");
        assert_eq!(link.name, "eth0");
        assert_eq!(link.mac, mac);
        assert!(link.up, "{link:?}");
        assert_eq!(nl.link_by_index(link.index).await.expect("by index"), link);
        assert!(nl.links().await.expect("dump").iter().any(|l| l == &link));

        let err = nl.link("nosuch0").await.expect_err("no such link");
        assert!(matches!(err, LinuxError::NoSuchInterface { .. }), "{err}");
        assert_eq!(err.errno(), Some(libc::ENODEV));

        let vip4: IpAddr = Ipv4Addr::new(192, 0, 2, 100).into();
        let vip6: IpAddr = "2001:db8::100".parse::<Ipv6Addr>().expect("literal").into();
        for (addr, prefix) in [(vip4, 24), (vip6, 64)] {
            assert_eq!(
                nl.add_address(link.index, addr, prefix).await.expect("add"),
                linux::Added::New
            );
            assert_eq!(
                nl.add_address(link.index, addr, prefix)
                    .await
                    .expect("adding again is Ok"),
                linux::Added::AlreadyThere
            );
        }
        let out = ip(&ns, &["-o", "addr", "show", "dev", "eth0"]);
        assert!(out.contains("inet 192.0.2.100/24"), "{out}");
        assert!(out.contains("inet6 2001:db8::100/64"), "{out}");
        let line6 = out
            .lines()
            .find(|l| l.contains("2001:db8::100"))
            .expect("v6 line");
        assert!(
            !line6.contains("tentative"),
            "NODAD: usable at once: {line6}"
        );
        assert!(host.has_address("eth0", "192.0.2.100"));

        let listed = nl.addresses(link.index).await.expect("addresses");
        for want in [
            (vip4, 24),
            (vip6, 64),
            (Ipv4Addr::new(192, 0, 2, 1).into(), 24),
        ] {
            assert!(listed.contains(&want), "{want:?} in {listed:?}");
        }
        let details = nl.address_details(link.index).await.expect("details");
        for d in &details {
            let ours = d.addr == vip4 || d.addr == vip6;
            assert_eq!(d.tandem, ours, "{d:?}");
        }
        let v4vip = details.iter().find(|d| d.addr == vip4).expect("vip listed");
        assert!(
            v4vip.secondary,
            "same subnet as the real address: {v4vip:?}"
        );

        // Released only with the tag: the node's own address stays, whatever anyone says.
        let own: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
        assert_eq!(
            nl.release_address(link.index, own, false)
                .await
                .expect("own"),
            linux::Released::NotOurs { prefix: 24 }
        );
        assert_eq!(
            nl.release_address(link.index, vip4, false)
                .await
                .expect("vip4"),
            linux::Released::Removed
        );
        assert_eq!(
            nl.release_address(link.index, vip4, false)
                .await
                .expect("gone"),
            linux::Released::NotPresent
        );
        for (addr, prefix) in [(vip4, 24), (vip6, 64)] {
            nl.del_address(link.index, addr, prefix).await.expect("del");
            nl.del_address(link.index, addr, prefix)
                .await
                .expect("deleting again is Ok");
        }
        let out = ip(&ns, &["-o", "addr", "show", "dev", "eth0"]);
        assert!(!out.contains("192.0.2.100"), "{out}");
        assert!(!out.contains("2001:db8::100"), "{out}");
        assert!(out.contains("192.0.2.1/24"), "real address kept: {out}");

        let err = nl
            .add_address(999_999, vip4, 24)
            .await
            .expect_err("no such ifindex");
        assert!(matches!(err, LinuxError::NoSuchIfindex { .. }), "{err}");
        let err = nl
            .add_address(link.index, vip4, 40)
            .await
            .expect_err("prefix 40 on IPv4");
        assert!(err.errno().is_some(), "keeps the errno: {err:?}");
        assert!(err.to_string().contains("192.0.2.100/40"), "{err}");
    });
}

async fn wait_for(
    w: &mut LinkWatcher,
    what: &str,
    mut pred: impl FnMut(&LinkEvent) -> bool,
) -> LinkEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, w.next()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("watcher error while waiting for {what}: {e}"),
            Err(_) => panic!("no event within 10 s: {what}"),
        }
    }
}

#[test]
fn link_watcher_reports_admin_down_up_carrier_loss_and_removal() {
    if !require_netns() {
        return;
    }
    let (_lab, a, b) =
        common::two_hosts("linux_link_watcher", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let (ns_a, ns_b) = (a.ns().to_owned(), b.ns().to_owned());
    block_in_ns(&ns_a.clone(), move || async move {
        let mut w = LinkWatcher::new().await.expect("watcher");
        let nl = Netlink::new().await.expect("netlink");
        let idx = nl.link("eth0").await.expect("eth0").index;
        let ours = move |up: bool| move |e: &LinkEvent| e.index == idx && e.up == up;

        // Make sure we start from up (carrier may still be settling after creation).
        if !nl.link("eth0").await.expect("eth0").up {
            wait_for(&mut w, "initial carrier", ours(true)).await;
        }

        ip(&ns_a, &["link", "set", "dev", "eth0", "down"]);
        let ev = wait_for(&mut w, "eth0 admin down", ours(false)).await;
        assert_eq!(ev.name, "eth0");
        ip(&ns_a, &["link", "set", "dev", "eth0", "up"]);
        wait_for(&mut w, "eth0 up again", ours(true)).await;

        // The peer end goes down: our side stays admin up but loses carrier.
        ip(&ns_b, &["link", "set", "dev", "eth0", "down"]);
        wait_for(&mut w, "carrier loss", ours(false)).await;
        assert!(!nl.link("eth0").await.expect("eth0").up);
        ip(&ns_b, &["link", "set", "dev", "eth0", "up"]);
        wait_for(&mut w, "carrier back", ours(true)).await;
        assert!(nl.link("eth0").await.expect("eth0").up);

        // A link that disappears is reported down (RTM_DELLINK).
        ip(
            &ns_a,
            &["link", "add", "x0", "type", "veth", "peer", "name", "x1"],
        );
        ip(&ns_a, &["link", "set", "x0", "up"]);
        ip(&ns_a, &["link", "set", "x1", "up"]);
        let x0 = nl.link("x0").await.expect("x0").index;
        if !nl.link("x0").await.expect("x0").up {
            wait_for(&mut w, "x0 up", |e| e.index == x0 && e.up).await;
        }
        ip(&ns_a, &["link", "del", "x0"]);
        let ev = wait_for(&mut w, "x0 removed", |e| e.index == x0 && !e.up).await;
        assert_eq!(ev.name, "x0");
    });
}

#[test]
fn link_watcher_recovers_lost_events_by_rereading_the_links() {
    if !require_netns() {
        return;
    }
    let mut lab = Lab::new("linux_link_watcher_overrun").expect("lab");
    let a = lab.host("a").expect("host a");
    let ns = a.ns().to_owned();
    block_in_ns(&ns.clone(), move || async move {
        ip(
            &ns,
            &["link", "add", "x0", "type", "veth", "peer", "name", "x1"],
        );
        ip(&ns, &["link", "set", "x1", "up"]);
        let nl = Netlink::new().await.expect("netlink");
        let x0 = nl.link("x0").await.expect("x0").index;
        // A tiny buffer, and nobody reading while the link flaps (this thread runs the
        // runtime and is busy running `ip`): the kernel drops events (ENOBUFS).
        let mut w = LinkWatcher::with_buffer_size(1024).await.expect("watcher");
        for _ in 0..40 {
            ip(&ns, &["link", "set", "x0", "up"]);
            ip(&ns, &["link", "set", "x0", "down"]);
        }
        // The last state (down) was among the dropped events; the watcher must still
        // report it, from its re-read after the overrun.
        let mut last = None;
        while let Ok(ev) = tokio::time::timeout(Duration::from_secs(2), w.next()).await {
            let ev = ev.expect("event");
            if ev.index == x0 {
                last = Some(ev);
            }
        }
        let last = last.expect("events for x0");
        assert!(!last.up, "{last:?}");
        ip(&ns, &["link", "set", "x0", "up"]);
        let ev = wait_for(&mut w, "x0 up after the overrun", |e| e.index == x0 && e.up).await;
        assert_eq!(ev.name, "x0");
    });
}

#[test]
fn netlink_outside_a_runtime_is_an_error() {
    // No namespace needed: only checks the runtime guard (the future is polled by hand).
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(Netlink::new()).as_mut().poll(&mut cx) {
        Poll::Ready(Err(LinuxError::NoRuntime { .. })) => {}
        Poll::Ready(other) => panic!("expected NoRuntime, got {other:?}"),
        Poll::Pending => panic!("expected NoRuntime, got Pending"),
    }
    match pin!(LinkWatcher::new()).as_mut().poll(&mut cx) {
        Poll::Ready(Err(LinuxError::NoRuntime { .. })) => {}
        Poll::Ready(other) => panic!("expected NoRuntime, got {other:?}"),
        Poll::Pending => panic!("expected NoRuntime, got Pending"),
    }
}
