"""A webhook endpoint for the contract test: every message Gatehouse sends is checked with the Standard
Webhooks library (`standardwebhooks`: headers, timestamp and signature) and against openapi.yaml's
`webhooks` entry (its body schema, WebhookMessage, with jsonschema_rs; its header patterns).
Each message is written to LOG as one JSON line: {"id", "type", "problems": [...]}.
    python webhook-receiver.py OPENAPI PORT_FILE LOG      (the secret in GATEHOUSE_WEBHOOK_SECRET)
"""
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema_rs
import yaml
from standardwebhooks import Webhook

spec_path, port_file, log_path = sys.argv[1:4]
with open(spec_path) as f:
    spec = yaml.safe_load(f)
operation = spec["webhooks"]["gatehouseEvent"]["post"]
body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
# The body's schema with the document's components beside it, so its `#/components/...` references resolve.
validator = jsonschema_rs.Draft202012Validator({**body_schema, "components": spec["components"]}, validate_formats=True)
header_patterns = {p["name"]: re.compile(p["schema"]["pattern"]) for p in operation["parameters"] if p["in"] == "header"}
webhook = Webhook(os.environ["GATEHOUSE_WEBHOOK_SECRET"])
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        problems = []
        for name, pattern in header_patterns.items():
            value = self.headers.get(name)
            if value is None or not pattern.search(value):
                problems.append(f"header {name}: {value!r} does not match {pattern.pattern}")
        message = None
        try:
            message = webhook.verify(body, dict(self.headers.items()))
        except Exception as error:  # the library's verdict, whatever its kind
            problems.append(f"standardwebhooks: {type(error).__name__}: {error}")
        if message is not None:
            problems += [f"schema: {error.message} at {list(error.instance_path)}" for error in validator.iter_errors(message)]
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            problems.append(f"content type {self.headers.get('Content-Type')!r}")
        with lock, open(log_path, "a") as log:
            log.write(json.dumps({"id": self.headers.get("webhook-id"), "type": (message or {}).get("type"), "problems": problems}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(port_file + ".tmp", port_file)
server.serve_forever()
