"""The `gateway` command as a user runs it: a real process on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[1]


def start_gateway(
    *args: str, env: dict[str, str] | None = None, seen: list[dict] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start `python -m gateway --port 0 ...`; returns the process and its base URL, read from its log.

    The log lines read on the way are added to `seen`.
    """
    full_env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    full_env.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--port", "0", *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    for line in process.stdout:
        entry = json.loads(line)  # every log line is one JSON object
        if seen is not None:
            seen.append(entry)
        if entry["message"].startswith("listening on"):
            return process, entry["address"]
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"the gateway did not start: {process.wait()}")


FAST_MOCK = "providers: {demo: {kind: mock, tokens_per_second: 100000}}\nroutes:\n  - {model: one, provider: demo}\n"


def start_with_config(tmp_path: Path, text: str) -> tuple[subprocess.Popen, str, openai.OpenAI]:
    """A gateway process on a config file written from `text`, and an SDK client for it."""
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    process, url = start_gateway("--config", str(config))
    return process, url, sdk_client(url)


def sdk_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="anything", max_retries=0, timeout=10)


def ask(client: openai.OpenAI, model: str = "one", max_tokens: int = 2) -> object:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens
    )


def test_run_the_repository_config_and_answer_on_the_demo_route_without_a_key() -> None:
    process, url = start_gateway("--config", "gateway.yaml")
    try:
        client = sdk_client(url)
        reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 8
        stream = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=3
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "Hello! I"
        council = client.chat.completions.create(
            model="demo-council", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert (
            council.choices[0].finish_reason == "length" and council.choices[0].message.content == "The council weighed"
        )
        assert len(council.model_extra["quorum"]["rounds"]) == 2, "the demo council debates two rounds"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_sighup_reloads_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("providers: {demo: {kind: mock}}\nroutes:\n  - {model: one, provider: demo}\n")
    process, url = start_gateway("--config", str(config))
    try:
        client = sdk_client(url)
        assert [model.id for model in client.models.list()] == ["one"]
        config.write_text(
            "providers: {demo: {kind: mock}}\nroutes:\n  - {model: one, provider: demo}\n  - {model: two, provider: demo}\n"
        )
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while [model.id for model in client.models.list()] != ["one", "two"]:
            assert time.monotonic() < deadline, "SIGHUP did not reload the config"
            time.sleep(0.05)
        assert client.chat.completions.create(
            model="two", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        ).choices
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_logged_durations_are_finer_than_a_millisecond(tmp_path: Path) -> None:
    """uvloop's loop.time() moves in whole milliseconds; the figures must not."""
    process, _, client = start_with_config(tmp_path, FAST_MOCK)
    try:
        for _ in range(5):
            ask(client, max_tokens=3)
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    durations = [entry["duration_ms"] for entry in map(json.loads, rest.splitlines()) if entry["message"] == "request"]
    assert len(durations) == 5
    assert any(duration != int(duration) for duration in durations), durations


def test_drain_delay_keeps_serving_while_ready_says_503(tmp_path: Path) -> None:
    """With server.drain_delay, a SIGTERM'd gateway still accepts new connections for that long:
    load balancers probing /ready see 503 (not a refused connection) while requests are still served."""
    process, url, client = start_with_config(tmp_path, "server: {drain_delay: 2}\n" + FAST_MOCK)
    try:
        assert urlopen_status(f"{url}/ready") == 200
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while urlopen_status(f"{url}/ready") != 503:  # each probe is a new connection, accepted while draining
            pass
        assert ask(client).choices
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - signalled >= 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def urlopen_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_access_lines_are_written_while_running_not_only_at_exit(tmp_path: Path) -> None:
    """The access log is buffered for a fraction of a second, never held until exit."""
    import selectors

    process, _, client = start_with_config(tmp_path, FAST_MOCK)
    try:
        ask(client)
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=5), "no access line within 5 s of the request"
        entry = json.loads(process.stdout.readline())
        assert entry["message"] == "request" and entry["path"] == "/v1/chat/completions"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


UNVERIFIED = (
    "providers: {lab: {kind: openai, base_url: 'https://127.0.0.1:9/v1', verify: false}, demo: {kind: mock}}\n"
    "routes:\n  - {model: lab, provider: lab}\n  - {model: one, provider: demo}\n"
)


def test_check_prints_the_configs_warnings(tmp_path: Path) -> None:
    """`--check` of a valid but risky config exits 0, prints the table, and a warning line
    on stderr naming the key (providers.<name>.verify)."""
    config = tmp_path / "gateway.yaml"
    config.write_text(UNVERIFIED)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--check", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "lab -> lab model (as requested)" in result.stdout
    assert result.stderr.splitlines() == [
        f"warning: {config}: providers.lab.verify: false: the upstream's TLS certificate is not verified"
    ]


def test_the_server_logs_the_configs_warnings_at_start(tmp_path: Path) -> None:
    """A server started on a risky config says so in its log before it listens, not only on reload."""
    config = tmp_path / "gateway.yaml"
    config.write_text(UNVERIFIED)
    seen: list[dict] = []
    process, _ = start_gateway("--config", str(config), seen=seen)
    try:
        warnings = [entry for entry in seen if entry["level"] == "WARNING"]
        assert [entry["message"] for entry in warnings] == [
            f"{config}: providers.lab.verify: false: the upstream's TLS certificate is not verified"
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_config_warnings_are_logged_at_start(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers:\n  p: {kind: openai, base_url: 'https://127.0.0.1:9/v1', api_key: k3y}\n"
        "routes:\n  - {model: m, provider: p}\n"
    )
    seen: list[dict] = []
    process, _ = start_gateway("--config", str(config), seen=seen)
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    [warning] = [entry for entry in seen if entry["level"] == "WARNING"]
    assert "providers.p.api_key: a secret of only 3 characters" in warning["message"]
    assert "k3y" not in "".join(map(str, seen)) + rest


def gateway_cli_check(config: Path) -> subprocess.CompletedProcess[str]:
    """`gateway --check --config <config>`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--check", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path, workers: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(FAST_MOCK)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(config), "--port", str(port), "--workers", workers],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"cannot listen on 127.0.0.1:{port}: ") and "in use" in last.lower()
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr


def test_help_names_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in ("gateway keys {create,list,revoke}", "gateway usage", "gateway db migrate"):
        assert command in result.stdout
