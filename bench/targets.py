"""What the benchmark measures: nginx itself and the proxies in front of it.

A Target knows its URLs and the process group whose CPU and memory count
for it; start_* functions start one, pinned, and return it ready or say
why not (status "skipped: ..." or "failed: ...").
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from . import fixtures, procs

REPO = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = Path(__file__).with_name("nginx.conf.template")
LITELLM_VENV = Path(os.environ.get("BENCH_LITELLM_VENV", "/tmp/bench-litellm-venv"))
TENSORZERO_VENV = Path(os.environ.get("BENCH_TENSORZERO_VENV", "/tmp/bench-tensorzero-venv"))
PORTKEY_DIR = Path(os.environ.get("BENCH_PORTKEY_DIR", "/tmp/bench-portkey"))
PORTKEY_LOOPBACK = Path(__file__).with_name("portkey") / "loopback.mjs"
TENSORZERO_LAUNCHER = Path(__file__).with_name("tensorzero_gateway.py")


@dataclass(frozen=True, slots=True)
class Ports:
    json: int
    sse: int
    slow: int
    paced: int = 0  # bench/paced.py's upstream (many slow streams); 0: not started


KINDS = ("json", "sse", "paced")  # what a request asks for: a completion, a fast stream, a paced one
FIXTURE_MODELS = {"json": fixtures.MODEL_JSON, "sse": fixtures.MODEL_SSE, "paced": fixtures.MODEL_PACED}


@dataclass
class Target:
    name: str
    json_url: str = ""
    sse_url: str = ""
    paced_url: str = ""  # many slow streams; empty: the target does not take part
    health_url: str = ""
    health_status: int = 200  # what health_url answers when the target is up
    # the model each kind of request names, when not the fixture's (TensorZero's are prefixed)
    models: dict[str, str] = field(default_factory=dict)
    # headers each kind of request carries besides Content-Type and Authorization (Portkey's upstream)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    slow_urls: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (url, model)
    proc: procs.Proc | None = None
    status: str = "ready"
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def url(self, kind: str) -> str:
        return {"json": self.json_url, "sse": self.sse_url, "paced": self.paced_url}[kind]

    def model(self, kind: str) -> str:
        return self.models.get(kind, FIXTURE_MODELS[kind])

    def extra_headers(self, kind: str) -> dict[str, str]:
        return self.headers.get(kind, {})


async def _http_ok(session: aiohttp.ClientSession, url: str, status: int = 200) -> bool:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
        await resp.read()
        return resp.status == status


async def _wait_ready(target: Target, session: aiohttp.ClientSession, timeout: float) -> Target:
    proc = target.proc
    ok = await procs.wait_until(
        lambda: _http_ok(session, target.health_url, target.health_status), timeout=timeout, proc=proc
    )
    if not ok:
        if proc is not None and not proc.alive():
            target.status = f"failed: exited with {proc.popen.returncode}"
        else:
            target.status = f"failed: not ready after {timeout:.0f} s"
        if proc is not None:
            target.notes.append(proc.log_tail())
    return target


# nginx, the upstream and the "direct" target ---------------------------------


def nginx_binary() -> str | None:
    for path in ("/usr/sbin/nginx", "/usr/bin/nginx"):
        if os.access(path, os.X_OK):
            return path
    from shutil import which

    return which("nginx")


def write_nginx_conf(prefix: Path, ports: Ports, *, slow_rate: int) -> Path:
    fields = {
        "PREFIX": str(prefix),
        "JSON_PORT": str(ports.json),
        "SSE_PORT": str(ports.sse),
        "SLOW_PORT": str(ports.slow),
        "SLOW_RATE": str(slow_rate),
        "JSON_BODY": fixtures.nginx_quote(fixtures.completion_body()),
        "SSE_BODY": fixtures.nginx_quote(fixtures.sse_body()),
    }
    text = NGINX_TEMPLATE.read_text()
    for key, value in fields.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise ValueError(f"nginx.conf.template: bench/targets.py does not fill {', '.join(left)}")
    path = prefix / "nginx.conf"
    path.write_text(text)
    return path


async def start_nginx(work: Path, ports: Ports, *, cpus: str, slow_rate: int, session: aiohttp.ClientSession) -> Target:
    binary = nginx_binary()
    target = Target(
        name="direct",
        json_url=f"http://127.0.0.1:{ports.json}/v1/chat/completions",
        sse_url=f"http://127.0.0.1:{ports.sse}/v1/chat/completions",
        health_url=f"http://127.0.0.1:{ports.json}/health",
    )
    if binary is None:
        target.status = "failed: nginx not installed (bash bench/run installs it)"
        return target
    prefix = work / "nginx"
    prefix.mkdir()
    conf = write_nginx_conf(prefix, ports, slow_rate=slow_rate)
    target.proc = procs.start("nginx", [binary, "-p", str(prefix), "-c", str(conf)], cpus=cpus, log_dir=work)
    return await _wait_ready(target, session, timeout=10)


# the bare aiohttp proxy -------------------------------------------------------


async def start_bare(work: Path, ports: Ports, *, cpus: str, session: aiohttp.ClientSession) -> Target:
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "bench.bare_proxy",
        "--port",
        str(port),
        "--upstream",
        f"json=http://127.0.0.1:{ports.json}/v1",
        "--upstream",
        f"sse=http://127.0.0.1:{ports.sse}/v1",
        "--upstream",
        f"slow=http://127.0.0.1:{ports.slow}/v1",
    ]
    if ports.paced:
        argv += ["--upstream", f"paced=http://127.0.0.1:{ports.paced}/v1"]
    target = Target(
        name="bare",
        json_url=f"{base}/json/v1/chat/completions",
        sse_url=f"{base}/sse/v1/chat/completions",
        paced_url=f"{base}/paced/v1/chat/completions" if ports.paced else "",
        health_url=f"{base}/health",
        slow_urls={"slow_nginx": (f"{base}/slow/v1/chat/completions", fixtures.MODEL_SLOW_NGINX)},
    )
    target.proc = procs.start("bare", argv, cpus=cpus, log_dir=work, cwd=str(REPO))
    return await _wait_ready(target, session, timeout=30)


# the gateway --------------------------------------------------------------------


def gateway_unrunnable(python: str, checkout: Path) -> str | None:
    """Why `python -m gateway` run in checkout would not run that checkout's gateway; None if it would."""
    code = "import importlib.util as u; s = u.find_spec('gateway.__main__'); print(s.origin if s else '')"
    try:
        done = subprocess.run([python, "-c", code], cwd=checkout, timeout=60, capture_output=True, text=True)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    origin = done.stdout.strip() if done is not None and done.returncode == 0 else ""
    if not origin:
        return f"skipped: `python -m gateway` is not importable from {checkout} yet"
    if not Path(origin).resolve().is_relative_to(checkout.resolve()):
        # e.g. PYTHONPATH, or a venv installed from another checkout: the figures would be another's
        return f"failed: `python -m gateway` in {checkout} imports {origin}"
    return None


def gateway_config(port: int, ports: Ports, *, auth: bool = True, redis_url: str | None = None) -> str:
    """The gateway's config. Auth on with ten client keys, as a shared deployment runs (issue 20): the
    bench's own key is one of them. Their limits are set far above any load here, so that they are
    checked (and counted, in process) on every request and never refuse one. `auth` False: no keys,
    no limits (`gateway-open`); `redis_url`: the limits counted in that Redis (`gateway-redis`)."""
    keys = "\n".join(
        f"    - {{id: bench-{n}, key: {key!r}, rpm: 100000000, tpm: 100000000000, max_parallel: 1000000}}"
        for n, key in enumerate([fixtures.API_KEY, *(f"sk-bench-client-key-{n:02d}" for n in range(1, 10))])
    )
    paced = (
        f'''  paced:      {{kind: openai, base_url: "http://127.0.0.1:{ports.paced}/v1", api_key: "{fixtures.API_KEY}"}}\n'''
        if ports.paced
        else ""
    )
    paced_route = f"  - {{model: {fixtures.MODEL_PACED}, provider: paced}}\n" if ports.paced else ""
    auth_section = f"auth:\n  keys:\n{keys}\n" if auth else "# auth off: no keys, no limits\n"
    store_section = f'store: {{redis_url: "{redis_url}", timeout: 0.05}}\n' if redis_url else ""
    return f"""\
# Written by bench/targets.py for one benchmark run.
server: {{host: 127.0.0.1, port: {port}}}
limits: {{max_tokens: 4096, timeout: 60, first_token_timeout: 30, idle_timeout: 30}}
default_model: bench
{auth_section}{store_section}providers:
  nginx_json: {{kind: openai, base_url: "http://127.0.0.1:{ports.json}/v1", api_key: "{fixtures.API_KEY}"}}
  nginx_sse:  {{kind: openai, base_url: "http://127.0.0.1:{ports.sse}/v1", api_key: "{fixtures.API_KEY}"}}
  nginx_slow: {{kind: openai, base_url: "http://127.0.0.1:{ports.slow}/v1", api_key: "{fixtures.API_KEY}"}}
{paced}  slow:       {{kind: mock, tokens_per_second: 2}}
routes:
  - {{model: {fixtures.MODEL_JSON}, provider: nginx_json}}
  - {{model: {fixtures.MODEL_SSE}, provider: nginx_sse}}
  - {{model: {fixtures.MODEL_SLOW}, provider: slow}}
  - {{model: {fixtures.MODEL_SLOW_NGINX}, provider: nginx_slow}}
{paced_route}"""


def gateway_env() -> dict[str, str]:
    env = dict(os.environ)
    if "TIKTOKEN_CACHE_DIR" not in env:
        for path in (REPO.parent / "shared/tiktoken", Path("/work/shared/tiktoken")):
            if path.is_dir():
                env["TIKTOKEN_CACHE_DIR"] = str(path)
                break
    return env


async def start_gateway(
    work: Path,
    ports: Ports,
    *,
    name: str,
    cpus: str,
    workers: int | None,
    session: aiohttp.ClientSession,
    timeout: float = 60,
    python: str = sys.executable,
    checkout: Path = REPO,
    auth: bool = True,
    redis_url: str | None = None,
) -> Target:
    """`python -m gateway` of checkout (this repo by default; the baseline's worktree and venv);
    `auth` and `redis_url` as gateway_config takes them."""
    target = Target(name=name)
    why_not = gateway_unrunnable(python, checkout)
    if why_not:
        target.status = why_not
        return target
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    config = work / f"{name}.yaml"
    config.write_text(gateway_config(port, ports, auth=auth, redis_url=redis_url))
    argv = [python, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    target.json_url = target.sse_url = f"{base}/v1/chat/completions"
    target.paced_url = target.json_url if ports.paced else ""
    target.health_url = f"{base}/health"
    target.slow_urls = {
        "mock": (target.json_url, fixtures.MODEL_SLOW),
        "slow_nginx": (target.json_url, fixtures.MODEL_SLOW_NGINX),
    }
    target.proc = procs.start(name, argv, cpus=cpus, log_dir=work, env=gateway_env(), cwd=str(checkout))
    await _wait_ready(target, session, timeout=timeout)
    if workers is not None and not target.ready and not target.proc.alive():
        log = target.proc.log_tail(40)
        if "--workers" in log or "unrecognized arguments" in log:
            target.status = "skipped: the gateway does not accept --workers yet"
            target.notes = [log.splitlines()[-1] if log else ""]
    return target


# Redis, for the rate limits of the target "gateway-redis" ---------------------------------


@dataclass
class Redis:
    port: int
    proc: procs.Proc | None = None
    status: str = "ready"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def redis_binary() -> str | None:
    from shutil import which

    return which("redis-server")


async def start_redis(work: Path, *, cpus: str, session: aiohttp.ClientSession) -> Redis:
    """redis-server on loopback with no persistence, pinned to `cpus` (the load's: it stands for a
    server elsewhere, not for the gateway's own work)."""
    redis = Redis(port=procs.free_port())
    binary = redis_binary()
    if binary is None:
        redis.status = "skipped: redis-server not installed (bash bench/run --limits-compare installs it)"
        return redis
    argv = [binary, "--port", str(redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    redis.proc = procs.start("redis", argv, cpus=cpus, log_dir=work, cwd=str(work))

    async def answers() -> bool:
        return redis_info(redis.port) is not None

    if not await procs.wait_until(answers, timeout=10, proc=redis.proc):
        redis.status = "failed: redis-server did not answer"
    return redis


def redis_info(port: int, section: str = "commandstats") -> str | None:
    """Redis' INFO section as text; None when it does not answer."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(f"*2\r\n$4\r\nINFO\r\n${len(section)}\r\n{section}\r\n".encode())
            head = b""
            while b"\r\n" not in head:
                piece = connection.recv(4096)
                if not piece:
                    return None
                head += piece
            size = int(head[1 : head.index(b"\r\n")])
            body = head[head.index(b"\r\n") + 2 :]
            while len(body) < size:
                piece = connection.recv(65536)
                if not piece:
                    return None
                body += piece
            return body[:size].decode()
    except (OSError, ValueError):
        return None


CLIENT_COMMANDS = ("evalsha", "eval", "script|", "hello", "client|", "select", "auth", "ping")


def redis_calls(port: int) -> int | None:
    """Commands clients sent Redis (INFO commandstats also counts those a script runs: left out);
    None when it does not answer. Each is one round trip: the gateway sends no pipelines."""
    text = redis_info(port)
    if text is None:
        return None
    calls = 0
    for line in text.splitlines():
        name = line.removeprefix("cmdstat_").split(":")[0]
        if line.startswith("cmdstat_") and name.startswith(CLIENT_COMMANDS):
            calls += int(line.split("calls=")[1].split(",")[0])
    return calls


# the gateway of another revision: the "baseline" ----------------------------------


@dataclass(frozen=True, slots=True)
class Baseline:
    revision: str  # the full sha
    subject: str  # its commit message's first line
    checkout: Path  # its git worktree, outside the repo
    python: Path  # the interpreter of the venv in it


def git(*args: str, cwd: Path = REPO) -> str | None:
    """git's stdout, stripped; None when it fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, timeout=30, capture_output=True, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def resolve_revision(rev: str) -> str | None:
    """The full sha of a commit of this repo (`2a4d199`, `HEAD~3`, a branch); None if none."""
    return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


def baseline_checkout(rev: str) -> Baseline | str:
    """The baseline that bench/baseline_setup.sh made (BENCH_BASELINE_DIR, BENCH_BASELINE_PYTHON),
    checked to be a clean checkout of rev; or why there is none."""
    sha = resolve_revision(rev)
    if sha is None:
        return f"{rev} is not a commit of this repository"
    checkout, python = os.environ.get("BENCH_BASELINE_DIR"), os.environ.get("BENCH_BASELINE_PYTHON")
    if not checkout or not python:
        return "no checkout of it: run `bash bench/run --baseline REV`, which makes one"
    checkout_path = Path(checkout)
    head = git("rev-parse", "HEAD", cwd=checkout_path)
    if head != sha:
        return f"{checkout} is at {head}, not {sha}"
    if git("status", "--porcelain", "--untracked-files=no", cwd=checkout_path) != "":
        return f"{checkout} has changes of its own"
    if not os.access(python, os.X_OK):
        return f"{python} does not exist"
    subject = git("log", "-1", "--format=%s", sha) or ""
    return Baseline(revision=sha, subject=subject, checkout=checkout_path, python=Path(python))


def current_revision() -> dict:
    """The sha of this repo's HEAD, and whether gateway/ or pyproject.toml differ from it."""
    changes = git("status", "--porcelain", "--", "gateway", "pyproject.toml")  # new modules count too
    return {"revision": git("rev-parse", "HEAD"), "modified": None if changes is None else changes != ""}


def package_versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the packages in python's environment ("-": not installed)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return '-'\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))"
    )
    try:
        done = subprocess.run([str(python), "-c", code, *names], timeout=60, capture_output=True, text=True)
        return json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}


async def start_baseline(
    work: Path, ports: Ports, baseline: Baseline, *, cpus: str, session: aiohttp.ClientSession
) -> Target:
    """The gateway of the baseline's revision, started exactly as the target "gateway"; a revision
    from before client keys (no gateway/server/auth.py) refuses an `auth:` section, so it runs
    without one, and the report's notes say so."""
    keys = (baseline.checkout / "gateway" / "server" / "auth.py").exists()
    target = await start_gateway(
        work,
        ports,
        name="baseline",
        cpus=cpus,
        workers=None,
        session=session,
        python=str(baseline.python),
        checkout=baseline.checkout,
        auth=keys,
    )
    if not keys:
        target.notes.append("auth off: this revision has no client keys, so no keys and no rate limits")
    return target


# LiteLLM's proxy ------------------------------------------------------------------


def litellm_config(ports: Ports) -> str:
    return f"""\
# Written by bench/targets.py for one benchmark run.
model_list:
  - model_name: {fixtures.MODEL_JSON}
    litellm_params: {{model: "openai/{fixtures.MODEL_JSON}", api_base: "http://127.0.0.1:{ports.json}/v1", api_key: "{fixtures.API_KEY}"}}
  - model_name: {fixtures.MODEL_SSE}
    litellm_params: {{model: "openai/{fixtures.MODEL_SSE}", api_base: "http://127.0.0.1:{ports.sse}/v1", api_key: "{fixtures.API_KEY}"}}
  - model_name: {fixtures.MODEL_PACED}
    litellm_params: {{model: "openai/{fixtures.MODEL_PACED}", api_base: "http://127.0.0.1:{ports.paced or ports.sse}/v1", api_key: "{fixtures.API_KEY}"}}
litellm_settings:
  telemetry: false
general_settings:
  master_key: "{fixtures.API_KEY}"
"""


async def start_litellm(
    work: Path, ports: Ports, *, cpus: str, session: aiohttp.ClientSession, timeout: float = 180
) -> Target:
    target = Target(name="litellm")
    binary = LITELLM_VENV / "bin/litellm"
    if not os.access(binary, os.X_OK):
        target.status = f"skipped: not installed ({LITELLM_VENV}; bash bench/litellm_setup.sh installs it)"
        return target
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    config = work / "litellm.yaml"
    config.write_text(litellm_config(ports))
    env = dict(
        os.environ,
        LITELLM_MASTER_KEY=fixtures.API_KEY,
        LITELLM_LOG="ERROR",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
        NO_DOCS="True",
        DISABLE_ADMIN_UI="True",
    )
    env.pop("VIRTUAL_ENV", None)
    target.json_url = target.sse_url = f"{base}/v1/chat/completions"
    target.paced_url = target.json_url if ports.paced else ""
    target.health_url = f"{base}/health/liveliness"
    target.proc = procs.start(
        "litellm",
        [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        cpus=cpus,
        log_dir=work,
        env=env,
        cwd=str(work),
    )
    return await _wait_ready(target, session, timeout=timeout)


# the paced upstream of many slow streams ------------------------------------------------


async def start_paced(
    work: Path, port: int, *, cpus: str, rate: int, chunks: int, session: aiohttp.ClientSession
) -> Target:
    """bench/paced.py's upstream; its target "direct" (the control) is its own URL."""
    base = f"http://127.0.0.1:{port}"
    target = Target(name="paced-upstream", paced_url=f"{base}/v1/chat/completions", health_url=f"{base}/health")
    argv = [sys.executable, "-m", "bench.paced", "serve", "--port", str(port), "--rate", str(rate)]
    argv += ["--chunks", str(chunks)]
    target.proc = procs.start("paced-upstream", argv, cpus=cpus, log_dir=work, cwd=str(REPO))
    return await _wait_ready(target, session, timeout=30)


# TensorZero -----------------------------------------------------------------------------


TENSORZERO_PREFIX = "tensorzero::model_name::"


def tensorzero_config(ports: Ports) -> str:
    models = [(fixtures.MODEL_JSON, ports.json), (fixtures.MODEL_SSE, ports.sse)]
    if ports.paced:
        models.append((fixtures.MODEL_PACED, ports.paced))
    blocks = "".join(
        f"""
[models.{name}]
routing = ["upstream"]

[models.{name}.providers.upstream]
type = "openai"
model_name = "{name}"
api_base = "http://127.0.0.1:{port}/v1/"
api_key_location = "env::BENCH_UPSTREAM_KEY"
"""
        for name, port in models
    )
    return f"""\
# Written by bench/targets.py for one benchmark run.
[gateway]
# no usage reports (TENSORZERO_DISABLE_PSEUDONYMOUS_USAGE_ANALYTICS=1 is set too)
disable_pseudonymous_usage_analytics = true
{blocks}"""


async def start_tensorzero(
    work: Path, ports: Ports, *, cpus: str, session: aiohttp.ClientSession, timeout: float = 60
) -> Target:
    """TensorZero's gateway from its wheel, in a process of its own (bench/tensorzero_gateway.py):
    it picks its port and prints its URL, which is read back from its log."""
    target = Target(name="tensorzero")
    python = TENSORZERO_VENV / "bin/python"
    if not os.access(python, os.X_OK):
        target.status = f"skipped: not installed ({TENSORZERO_VENV}; bash bench/tensorzero_setup.sh installs it)"
        return target
    config = work / "tensorzero.toml"
    config.write_text(tensorzero_config(ports))
    env = dict(
        os.environ,
        BENCH_UPSTREAM_KEY=fixtures.API_KEY,
        TENSORZERO_DISABLE_PSEUDONYMOUS_USAGE_ANALYTICS="1",
        RUST_LOG="warn",
    )
    for var in ("VIRTUAL_ENV", "PYTHONPATH", "TENSORZERO_CLICKHOUSE_URL", "TENSORZERO_POSTGRES_URL"):
        env.pop(var, None)
    target.proc = procs.start(
        "tensorzero", [str(python), str(TENSORZERO_LAUNCHER), str(config)], cpus=cpus, log_dir=work, env=env
    )
    proc = target.proc

    async def url_printed() -> bool:
        return "TENSORZERO_URL " in proc.log_tail(200)

    if not await procs.wait_until(url_printed, timeout=timeout, proc=proc):
        target.status = f"failed: exited with {proc.popen.returncode}" if not proc.alive() else "failed: no URL"
        target.notes.append(proc.log_tail())
        return target
    base = next(
        line.split(" ", 1)[1].strip() for line in proc.log_tail(200).splitlines() if line.startswith("TENSORZERO_URL ")
    )
    # base is http://127.0.0.1:PORT/openai/v1; the embedded gateway has only the OpenAI routes
    # and a 404 fallback, no /health: its fallback's 404 is what says it is up.
    target.json_url = target.sse_url = f"{base}/chat/completions"
    target.paced_url = target.json_url if ports.paced else ""
    target.health_url = base.rsplit("/openai/", 1)[0] + "/health"
    target.health_status = 404
    target.models = {kind: TENSORZERO_PREFIX + FIXTURE_MODELS[kind] for kind in KINDS}
    return await _wait_ready(target, session, timeout=timeout)


# Portkey ----------------------------------------------------------------------------------


def node_binary() -> str | None:
    from shutil import which

    return which("node")


def listening_addresses(pgid: int) -> list[str]:
    """The addresses the group's processes listen on for TCP, from /proc (what `ss -ltn` shows)."""
    inodes = set()
    for pid in procs.group_pids(pgid):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            if v6:
                words = [address[i : i + 8] for i in range(0, 32, 8)]
                raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
                host = f"[{ipaddress.IPv6Address(raw)}]"
            else:
                host = ".".join(str(b) for b in bytes.fromhex(address)[::-1])
            found.append(f"{host}:{int(port, 16)}")
    return sorted(set(found))


async def start_portkey(
    work: Path, ports: Ports, *, cpus: str, session: aiohttp.ClientSession, timeout: float = 60
) -> Target:
    """Portkey's gateway (node build/start-server.js --port=N --headless), bound to 127.0.0.1 by
    bench/portkey/loopback.mjs. It has no config: each request names its upstream in headers."""
    target = Target(name="portkey")
    script = PORTKEY_DIR / "node_modules/@portkey-ai/gateway/build/start-server.js"
    node = node_binary()
    if node is None or not script.is_file():
        target.status = f"skipped: not installed ({PORTKEY_DIR}; bash bench/portkey_setup.sh installs it)"
        return target
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [node, "--import", PORTKEY_LOOPBACK.as_uri(), str(script), f"--port={port}", "--headless"]
    env = dict(os.environ, NODE_ENV="production")
    target.proc = procs.start("portkey", argv, cpus=cpus, log_dir=work, env=env, cwd=str(PORTKEY_DIR))
    target.json_url = target.sse_url = f"{base}/v1/chat/completions"
    target.paced_url = target.json_url if ports.paced else ""
    target.health_url = f"{base}/"
    upstream_ports = {"json": ports.json, "sse": ports.sse, "paced": ports.paced}
    target.headers = {
        kind: {"x-portkey-provider": "openai", "x-portkey-custom-host": f"http://127.0.0.1:{port_}/v1"}
        for kind, port_ in upstream_ports.items()
        if port_
    }
    await _wait_ready(target, session, timeout=timeout)
    if target.ready:
        listening = listening_addresses(target.proc.pid)
        target.notes.append(f"listening on {', '.join(listening) or 'nothing?'}")
        if any(not a.startswith("127.0.0.1:") for a in listening):
            target.status = f"failed: listens beyond 127.0.0.1 ({', '.join(listening)})"
    return target
