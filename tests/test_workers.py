"""--workers: several processes on one port, metrics summed over them, SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import httpx2 as httpx
from prometheus_client.parser import text_string_to_metric_families
from test_cli import start_gateway


def read_log_lines(process, lines: list[dict]) -> threading.Thread:
    """Keep reading the gateway's JSON log lines (so its pipe never fills)."""

    def pump() -> None:
        for line in process.stdout:
            lines.append(json.loads(line))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def total_requests(metrics_text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "gateway_requests_total"
    )


def test_two_workers_share_the_port_and_sum_their_metrics(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers: {demo: {kind: mock, tokens_per_second: 20}}\nroutes:\n  - {model: demo, provider: demo}\n"
    )
    lines: list[dict] = []
    process, url = start_gateway("--config", str(config), "--workers", "2", seen=lines)
    read_log_lines(process, lines)
    try:
        prefixes = set()
        for _ in range(40):  # a new connection each time: the kernel spreads them over the workers
            with httpx.Client() as client:
                response = client.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
                )
                assert response.status_code == 200
                prefixes.add(response.headers["x-request-id"][:12])
        assert len(prefixes) == 2, "both workers answered"
        for _ in range(4):  # whichever worker answers the scrape, it shows the sum
            with httpx.Client() as client:
                assert total_requests(client.get(f"{url}/metrics").text) == 40

        # SIGTERM: a stream in flight finishes, new connections are refused, everyone exits 0
        with (
            httpx.Client(timeout=10) as client,
            client.stream(
                "POST",
                f"{url}/v1/chat/completions",
                json={
                    "model": "demo",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": True,
                    "max_tokens": 20,
                },
            ) as stream,
        ):
            events = stream.iter_lines()
            assert next(events).startswith("data: ")
            process.send_signal(signal.SIGTERM)
            rest = [line for line in events if line]
        assert rest[-1] == "data: [DONE]"
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    started = next(line for line in lines if line["message"].startswith("started 2 workers"))
    assert not os.path.exists(started["metrics_dir"]), "the multiprocess metrics directory was removed"
    assert sum(line["message"].startswith("draining") for line in lines) == 2
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert (
        len(access) >= 40
        and access[0]["route"] == "demo"
        and access[0]["status"] == 200
        and access[0]["time"].endswith("Z")
    )
