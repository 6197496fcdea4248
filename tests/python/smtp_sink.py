"""A real SMTP server for tests (aiosmtpd) that keeps what it receives.

Usage: smtp_sink.py PORT OUT_FILE [--fail N]

Listens on 127.0.0.1:PORT and appends one JSON object per accepted
message to OUT_FILE: envelope sender and recipients, every header, the
subject, and the decoded plain-text and HTML bodies. With --fail N it
answers the first N messages with a temporary failure (451), and every
message when N is -1. Prints "ready" once it accepts connections.
"""

import argparse
import email
import json
import signal
import threading
from email import policy

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, fail):
        self.out = out
        self.fail = fail
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.fail != 0:
                if self.fail > 0:
                    self.fail -= 1
                return "451 4.3.0 Try again later (test sink)"
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in msg.items()},
            "subject": str(msg["subject"]),
            "text": text.get_content().replace("\r\n", "\n") if text is not None else None,
            "html": html.get_content().replace("\r\n", "\n") if html is not None else None,
        }
        with self.lock, open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("out")
    ap.add_argument("--fail", type=int, default=0)
    args = ap.parse_args()
    controller = Controller(Sink(args.out, args.fail), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
