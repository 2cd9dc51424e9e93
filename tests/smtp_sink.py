"""A local SMTP server for tests/it/notify.rs, built on aiosmtpd.

Usage: python3 tests/smtp_sink.py DIR
Writes each message it receives to DIR/<n>.json as {"mail_from", "rcpt_tos", "data"}
(written under a temporary name, then renamed, so a reader never sees half a file),
prints "listening PORT" once it accepts connections, and runs until killed.
"""

import json
import os
import socket
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        tmp = os.path.join(self.directory, f".{n}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                },
                f,
            )
        os.rename(tmp, os.path.join(self.directory, f"{n}.json"))
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    directory = sys.argv[1]
    port = free_port()
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"listening {port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
