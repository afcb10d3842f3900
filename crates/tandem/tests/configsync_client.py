#!/usr/bin/env python3
"""Calls a tandem node's config sync API with Python's standard xmlrpc.client, as any
XML-RPC client would: over HTTPS, trusting only the node's own (self-signed) certificate.

usage: configsync_client.py URL CERT_PEM USER PASSWORD

Prints one JSON object with what each call returned or raised; the Rust test checks it.
"""

import json
import ssl
import sys
import xmlrpc.client


def main():
    url, cert, user, password = sys.argv[1:5]
    # Trust exactly the node's certificate (pinned), and check its IP address SAN.
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = True
    out = {}

    host = url.split("://", 1)[1]
    authed = xmlrpc.client.ServerProxy(
        f"https://{user}:{password}@{host}", context=ctx, allow_none=False
    )
    out["version"] = authed.tandem.version()
    status = authed.tandem.status()
    out["status_node"] = status.get("node")
    out["status_has_vips"] = "vips" in status
    out["status_config_sync_role"] = status.get("config_sync", {}).get("role")
    out["status_sync_state"] = status.get("sync", {}).get("state")
    out["status_has_state_sync"] = "state_sync" in status
    # The synced areas as they run; certificate keys hidden (the credentials alone allow this).
    out["get_areas_certificates"] = authed.tandem.get_areas().get("areas", {}).get("certificates")
    out["get_areas_wireguard"] = authed.tandem.get_areas().get("areas", {}).get("wireguard")

    # A bad call is a fault that names the problem, and changes nothing.
    try:
        authed.tandem.apply_areas(0, {}, "fw1", False)
        out["bad_apply"] = "no fault"
    except xmlrpc.client.Fault as f:
        out["bad_apply"] = {"code": f.faultCode, "string": f.faultString}
    try:
        authed.system.exec("id")
        out["unknown_method"] = "no fault"
    except xmlrpc.client.Fault as f:
        out["unknown_method"] = {"code": f.faultCode, "string": f.faultString}

    # The password is every node's: with it alone, no push and no heartbeat is taken (only
    # from the primary's certificate), and no reload from elsewhere than the node itself.
    evil = {"node": "evil", "software": "0.1.0", "protocol": 1, "schema": 1}
    try:
        authed.tandem.apply_areas(999, {"rules": ""}, evil, True)
        out["foreign_push"] = "applied"
    except xmlrpc.client.Fault as f:
        out["foreign_push"] = {"code": f.faultCode, "string": f.faultString}
    try:
        authed.tandem.heartbeat(evil, 999)
        out["foreign_heartbeat"] = "accepted"
    except xmlrpc.client.Fault as f:
        out["foreign_heartbeat"] = {"code": f.faultCode, "string": f.faultString}
    try:
        authed.tandem.reload()
        out["foreign_reload"] = "reloaded"
    except xmlrpc.client.Fault as f:
        out["foreign_reload"] = {"code": f.faultCode, "string": f.faultString}

    # Without credentials, and with wrong ones: HTTP 401.
    for name, proxy_url in [
        ("no_auth", f"https://{host}"),
        ("wrong_auth", f"https://{user}:wrong-{password}@{host}"),
    ]:
        try:
            xmlrpc.client.ServerProxy(proxy_url, context=ctx).tandem.version()
            out[name] = "accepted"
        except xmlrpc.client.ProtocolError as e:
            out[name] = {"http": e.errcode}

    # A client that does not trust the node's certificate gets no answer at all.
    try:
        xmlrpc.client.ServerProxy(
            f"https://{user}:{password}@{host}", context=ssl.create_default_context()
        ).tandem.version()
        out["untrusted_cert"] = "accepted"
    except ssl.SSLError as e:
        out["untrusted_cert"] = {"ssl_error": e.reason}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
