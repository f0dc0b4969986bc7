"""TensorZero's HTTP gateway, started in this process from the `tensorzero` wheel.

    /tmp/bench-tensorzero-venv/bin/python bench/tensorzero_gateway.py CONFIG.toml

Run by bench/targets.py on the TensorZero venv's interpreter (not the bench's). The wheel's
extension module holds the whole Rust gateway; `tensorzero._start_http_gateway` (what the
package's `patch_openai_client` uses) starts it on 127.0.0.1, on a port it picks, with
only the OpenAI-compatible routes (`/openai/v1/...`) and its 404 fallback. This prints
`TENSORZERO_URL <base url>` once it listens, then waits for SIGTERM or SIGINT and
shuts it down. No ClickHouse, Postgres or Valkey: observability is off.
"""

import signal
import sys
import threading

import tensorzero


def main() -> None:
    gateway = tensorzero._start_http_gateway(
        config_file=sys.argv[1], clickhouse_url=None, postgres_url=None, valkey_url=None, async_setup=False
    )
    print(f"TENSORZERO_URL {gateway.base_url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    gateway.close()


if __name__ == "__main__":
    main()
