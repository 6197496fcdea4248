"""Drive a running Squall with the official `zulip` Python client.

Client A registers and listens with call_on_each_event (the real long-poll
loop bots use); client B sends a stream message mentioning A and a direct
message; A must receive both, with the right flags, and GET /messages must
return them. Every response body is validated against Zulip's OpenAPI
description. Exits non-zero on the first failure.

Usage: zulip_client_check.py --site URL --a-rc FILE --b-rc FILE --openapi YAML
"""

import argparse
import json
import sys
import time
import threading

import openapi_schema_validator
import yaml
import zulip

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as Loader


class Done(Exception):
    """Raised from the event callback to leave call_on_each_event."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a-rc", required=True)
    ap.add_argument("--b-rc", required=True)
    ap.add_argument("--openapi", required=True)
    args = ap.parse_args()

    with open(args.openapi) as f:
        spec = yaml.load(f, Loader=Loader)

    def validate(path, method, body, status="200"):
        schema = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        wrapped = dict(schema)
        wrapped["components"] = spec["components"]
        try:
            openapi_schema_validator.validate(body, wrapped, cls=openapi_schema_validator.OAS30Validator)
        except Exception as e:  # jsonschema.ValidationError, with a long message
            raise AssertionError(f"{method.upper()} {path} response does not match the OpenAPI schema:\n{str(e)[:3000]}\nbody: {json.dumps(body)[:2000]}")

    def ok(result, what):
        assert result.get("result") == "success", f"{what} failed: {result}"
        return result

    a = zulip.Client(config_file=args.a_rc)
    b = zulip.Client(config_file=args.b_rc)

    validate("/server_settings", "get", ok(a.get_server_settings(), "server_settings"))
    me_a = ok(a.get_profile(), "get_profile")
    validate("/users/me", "get", me_a)
    me_b = ok(b.get_profile(), "get_profile")
    validate("/users", "get", ok(a.get_members(), "get_members"))

    sub = ok(a.add_subscriptions(streams=[{"name": "Denmark"}]), "subscribe A")
    validate("/users/me/subscriptions", "post", sub)
    ok(b.add_subscriptions(streams=[{"name": "Denmark"}]), "subscribe B")
    validate("/users/me/subscriptions", "get", ok(a.get_subscriptions(), "get_subscriptions"))
    validate("/streams", "get", ok(a.get_streams(), "get_streams"))

    reg = ok(a.register(event_types=["message", "subscription", "realm_user"], apply_markdown=True), "register")
    validate("/register", "post", reg)
    a.deregister(reg["queue_id"])

    # A listens the way bots do.
    received = []
    registered = threading.Event()
    original_register = a.register

    def register_and_signal(*r_args, **r_kwargs):
        res = original_register(*r_args, **r_kwargs)
        validate("/register", "post", res)
        registered.set()
        return res

    a.register = register_and_signal

    def on_event(event):
        received.append(event)
        if sum(1 for e in received if e["type"] == "message") >= 2:
            raise Done()

    errors = []

    def listen():
        try:
            a.call_on_each_event(on_event, event_types=["message"])
        except Done:
            pass
        except Exception as e:  # surfaced below
            errors.append(e)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert registered.wait(30), "A never registered"

    full_name = me_a["full_name"]
    sent = ok(b.send_message({"type": "stream", "to": "Denmark", "topic": "greetings", "content": f"hi @**{full_name}**"}), "send stream")
    validate("/messages", "post", sent)
    sent_dm = ok(b.send_message({"type": "private", "to": [me_a["user_id"]], "content": "psst"}), "send dm")
    validate("/messages", "post", sent_dm)

    listener.join(30)
    assert not errors, f"listener failed: {errors}"
    assert not listener.is_alive(), f"A did not receive both messages; got {received}"
    by_id = {e["message"]["id"]: e for e in received if e["type"] == "message"}
    stream_ev, dm_ev = by_id[sent["id"]], by_id[sent_dm["id"]]
    assert stream_ev["flags"] == ["mentioned"], stream_ev
    assert stream_ev["message"]["display_recipient"] == "Denmark", stream_ev
    assert stream_ev["message"]["sender_email"] == me_b["email"], stream_ev
    assert dm_ev["flags"] == [], dm_ev
    assert dm_ev["message"]["type"] == "private", dm_ev
    for e in received:
        validate("/events", "get", {"result": "success", "msg": "", "events": [e], "queue_id": "x"})

    # History, as clients page it.
    hist = ok(a.get_messages({"anchor": "newest", "num_before": 10, "num_after": 0}), "get_messages")
    validate("/messages", "get", hist)
    ids = [m["id"] for m in hist["messages"]]
    assert ids[-2:] == [sent["id"], sent_dm["id"]], ids
    assert "mentioned" in hist["messages"][-2]["flags"], hist["messages"][-2]
    # The sender's own copy is unread: ZulipPython is not a read_by_sender client.
    hist_b = ok(b.get_messages({"anchor": "newest", "num_before": 1, "num_after": 0}), "get_messages B")
    assert "read" not in hist_b["messages"][-1]["flags"], hist_b

    # Other event types, schema-checked: a new public stream (stream/create
    # to everyone), subscribing A and B to it (subscription/add), then a
    # third user joining (subscription/peer_add to existing subscribers).
    everything = ok(a.register(), "register for all event types")
    validate("/register", "post", everything)
    ok(b.add_subscriptions(streams=[{"name": "Scotland"}], principals=[me_a["user_id"], me_b["user_id"]]), "subscribe both")
    owner_id = next(u["user_id"] for u in a.get_members()["members"] if u["is_owner"])
    ok(b.add_subscriptions(streams=[{"name": "Scotland"}], principals=[owner_id]), "subscribe the owner")
    # Through a cluster's router the events travel over RabbitMQ and may
    # land a moment after the answer: poll (without waiting) until they
    # are all there, for at most 10 s.
    wanted = {("stream", "create"), ("subscription", "add"), ("subscription", "peer_add")}
    deadline = time.monotonic() + 10
    while True:
        evs = ok(a.get_events(queue_id=everything["queue_id"], last_event_id=-1, dont_block=True), "get_events")
        validate("/events", "get", evs)
        kinds = sorted({(e["type"], e.get("op")) for e in evs["events"]})
        if wanted <= set(kinds) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ("stream", "create") in kinds and ("subscription", "add") in kinds and ("subscription", "peer_add") in kinds, kinds
    a.deregister(everything["queue_id"])

    # Errors come back in Zulip's shape.
    bad = a.get_events(queue_id="no-such-queue", last_event_id=-1)
    assert bad.get("code") == "BAD_EVENT_QUEUE_ID", bad
    validate("/events", "get", bad, status="400")

    print(f"zulip client check: ok ({len(received)} events received, {len(hist['messages'])} messages in history)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
