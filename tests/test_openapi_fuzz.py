"""The document is true: schemathesis sends a few thousand requests it generates from /openapi.json
to a running gateway on the demo routes, and every answer must be one the document allows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = """\
providers: {demo: {kind: mock, tokens_per_second: 0}}
limits: {max_tokens: 8}
routes:
  - {model: demo, provider: demo}
  - {model: "*", provider: demo}   # every generated model name reaches the mock
"""
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",  # events of a stream too, each against the event schema
]


class GatewayProcess:
    """`python -m gateway` on a free port, its log lines collected by a thread (so that a full pipe
    never stops it); terminated and waited for on exit."""

    def __init__(self, config: Path) -> None:
        env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--port", "0", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[dict] = []
        self.url = ""
        self.listening = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            entry = json.loads(line)
            self.lines.append(entry)
            if entry["message"].startswith("listening on"):
                self.url = entry["address"]
                self.listening.set()
        self.listening.set()

    def __enter__(self) -> GatewayProcess:
        assert self.listening.wait(60) and self.url, f"the gateway did not start: {self.lines}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.reader.join(30)


def test_schemathesis_finds_no_answer_the_document_does_not_allow(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    with GatewayProcess(config) as gateway:
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{gateway.url}/openapi.json",
                "--checks",
                ",".join(CHECKS),
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "40",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--max-response-time",
                "5",  # no hang: every answer, streams included, within 5 s
                "--no-color",
                "--seed",
                "20261129",  # the same requests every run: a failure here is reproducible
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    requests = [line for line in gateway.lines if line.get("message") == "request"]
    outcomes = Counter((family(line["path"]), line["stream"], line["status"]) for line in requests)
    assert len(requests) >= 300, outcomes
    # answers, and streams: at least the document's examples at both paths, whose events are checked too (the
    # generated Responses bodies are mostly refused: `prompt`, `conversation` and the like need state at OpenAI)
    assert outcomes[("chat", False, 200)] >= 100 and outcomes[("chat", True, 200)] >= 2, outcomes
    assert outcomes[("responses", False, 200)] >= 2 and outcomes[("responses", True, 200)] >= 2, outcomes
    assert outcomes[("embeddings", False, 200)] >= 50, outcomes
    assert not [line for line in requests if line["status"] >= 500]


def family(path: str) -> str:
    """The model endpoint a request went to (either prefix), or `other`."""
    for name, suffix in (("chat", "/chat/completions"), ("responses", "/responses"), ("embeddings", "/embeddings")):
        if path in (f"/v1{suffix}", f"/api/v1{suffix}"):
            return name
    return "other"
