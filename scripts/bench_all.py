"""Every table of BENCHMARKS.md, measured side by side in one run: scripts/bench-all runs this
after building the release binaries. Prints the whole file to stdout, progress to stderr.

Servers are children of this script, stopped by PID; every socket is on 127.0.0.1. CPU time per
request is read from /proc/PID/stat (user + system, in ticks of 10 ms) before and after each
load, for every process of the server (nginx: master and worker)."""
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
DRIVERS = ["mio", "tokio", "smol"]
ROUNDS = 3


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$", " ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def cpu_split(pids):
    """User and system CPU seconds of these processes."""
    user = system = 0
    for pid in pids:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def cpu_seconds(pids):
    return sum(cpu_split(pids))


def children(pid):
    out = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class Server:
    """A server process of ours or a reference one, on a port of its own."""

    def __init__(self, cmd, port, extra_pids=False):
        log("$", " ".join(str(c) for c in cmd))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = port
        wait_for_port(port, self.proc)
        # nginx forks its worker after binding: give it the time to exist.
        time.sleep(0.3 if extra_pids else 0.05)
        self.pids = [self.proc.pid] + (children(self.proc.pid) if extra_pids else [])

    def cpu(self):
        return cpu_seconds(self.pids)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def ours(name, driver, *args):
    port = free_port()
    cmd = [BIN / name, "--driver", driver, "--listen", f"127.0.0.1:{port}", *args]
    return Server(cmd, port)


def in_turn(servers, round_no):
    """The servers in their order on even rounds and reversed on odd ones, so that whatever the
    first run after a start-up gains or loses falls on each side of a pair alike."""
    return list(servers) if round_no % 2 == 0 else list(reversed(servers))


def ratio(a, b):
    return f"**{a / b:.2f}**" if b else "—"


def times(value, target):
    """`value` as a ratio, with the third decimal when two would round it onto `target`."""
    shown = f"{value:.2f}"
    if float(shown) == target and value != target:
        shown = f"{value:.3f}"
    return f"{shown}×"


def spread(ratios):
    """The range of the rounds' ratios, which says how far the run-to-run noise reaches."""
    return f"rounds {min(ratios):.2f}–{max(ratios):.2f}×"


def verdict(value, target, lower_is_better=True):
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "**not met**"


# ---------------------------------------------------------------------------------------------
# Framing


def framing(targets):
    env = dict(os.environ, BENCH_MIB="16")
    subprocess.run(
        ["cargo", "bench", "-q", "-p", "asynchat-core", "--bench", "framer", "--", "chunk64k"],
        check=True, cwd=ROOT, env=env, stdout=sys.stderr,
    )
    python = json.loads(run([sys.executable, ROOT / "core" / "benches" / "python_asynchat.py"],
                            env=env))
    crit = ROOT / "target" / "criterion"

    def mb_per_s(group, impl):
        d = crit / group / impl / "new"
        est = json.loads((d / "estimates.json").read_text())
        nbytes = json.loads((d / "benchmark.json").read_text())["throughput"]["Bytes"]
        return nbytes / (est["median"]["point_estimate"] / 1e9) / 1e6

    out = ["| terminator, line | `poll_frame` MB/s | `poll_frame_ref` MB/s | `poll_event` MB/s "
           "| tokio-util `LinesCodec` MB/s | Python 3.11 `asynchat` MB/s "
           "| `poll_frame` : `LinesCodec` | `poll_frame` : Python |",
           "|---|---|---|---|---|---|---|---|"]
    for delim in ("lf", "crlf"):
        for line in (16, 64, 1024):
            key = f"{delim}/line{line}/chunk64k"
            group = key.replace("/", "_")
            f = {i: mb_per_s(group, i) for i in
                 ("framer-frames", "framer-borrowed", "framer-events", "tokio-lines")}
            py = python[key] / 1e6
            vs_py = f["framer-frames"] / py
            shown = "\\n" if delim == "lf" else "\\r\\n"
            out.append(
                f"| `{shown}`, {line} B "
                f"| {f['framer-frames']:.0f} | {f['framer-borrowed']:.0f} "
                f"| {f['framer-events']:.0f} | {f['tokio-lines']:.0f} | {py:.1f} "
                f"| {ratio(f['framer-frames'], f['tokio-lines'])} | **{vs_py:.0f}** |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Echo: echo_bench prints its own tables


ECHO_TARGETS = {"asynchat": ("mio", "the hand-written mio echo", 1.0),
                "tokio": ("tokio", "`Framed`", 0.85),
                "smol": ("smol", "plain smol", 1.0)}

# What a baseline leaves out that ours does, where that bounds the ratio.
BASELINE_NOTES = {"raw": "; the hand-written echo frames no line: one `memrchr` a read "
                         "(`raw_echo.rs`), where ours hands each line to the protocol"}

# Server CPU ns per line of each baseline echo server, by load, from the compare tables: the
# Python section reads the hand-written echo's from the pipelined section, run before it.
BASELINE_CPU = {}


def echo_table(args, targets, load):
    table = run([BIN / "echo_bench", "compare", *args], cwd=ROOT)
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) < 8 or cells[0] not in ECHO_TARGETS:
            continue
        driver, base, cpu_target = ECHO_TARGETS[cells[0]]
        a, b = (float(x) for x in cells[7].split(":"))
        ua, ub = (float(x) for x in cells[8].split(":"))
        BASELINE_CPU[(cells[2], load)] = b
        rps = float(cells[4].strip("*"))
        split = (f"user space {ua:.0f} : {ub:.0f} ns a line, kernel {a - ua:.0f} : {b - ub:.0f}"
                 + BASELINE_NOTES.get(cells[2], ""))
        targets.append((f"echo on {driver} against {base}, {load}: CPU per line", f"≤ {cpu_target}×",
                        times(a / b, cpu_target), verdict(a / b, cpu_target), split))
        targets.append((f"echo on {driver} against {base}, {load}: lines/s", "≥ 1.0×",
                        times(rps, 1.0), verdict(rps, 1.0, False),
                        f"rounds won {cells[6]} of {args[1]}; the load generator shares the two cores"))
    return table.strip()


def echo_load(server):
    """The pipelined load on `server` for 4 s (`echo_bench load`): lines/s, and the server's CPU
    ns per line, in all and in user space."""
    (u0, s0) = cpu_split(server.pids)
    line = run([BIN / "echo_bench", "load", f"127.0.0.1:{server.port}", "4"])
    (u1, s1) = cpu_split(server.pids)
    m = re.match(r"(\d+) lines/s (\d+) lines", line)
    lines = max(1, int(m[2]))
    return float(m[1]), (u1 - u0 + s1 - s0) * 1e9 / lines, (u1 - u0) * 1e9 / lines


def python_echo(targets):
    """The `echo` example on mio against Python's asynchat echo, under the same pipelined load."""
    got = {}
    for round_no in range(2):
        for label in in_turn(("python", "mio"), round_no):
            if label == "python":
                port = free_port()
                server = Server([sys.executable, ROOT / "scripts" / "python_echo.py", str(port)],
                                port)
            else:
                server = ours("echo", "mio")
            with server:
                got.setdefault(label, []).append(echo_load(server))
    med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in got.items()}
    (pr, pc, pu), (mr, mc, mu) = med["python"], med["mio"]
    floor = BASELINE_CPU.get(("raw", "pipelined"))
    bound = ("the hand-written echo's own CPU per line comes from the pipelined echo section, "
             "not run here; " if floor is None else
             f"the hand-written mio echo, which frames nothing, spends {floor:.0f} ns a line, "
             f"{pc / floor:.0f}× less than Python: the kernel's work a line leaves no server much "
             "further; ")
    targets.append(("echo on mio against Python 3.11's asynchat echo: CPU per line", "≥ 20× less",
                    f"{pc / mc:.0f}× less ({pu / mu:.0f}× less in user space)",
                    verdict(pc / mc, 20, False),
                    bound + f"kernel {pc - pu:.0f} : {mc - mu:.0f} ns a line, Python : ours"))
    return "\n".join([
        "| server | lines/s | server CPU ns per line | of which user space |", "|---|---|---|---|",
        f"| Python 3.11 `asyncore` + `asynchat` (`scripts/python_echo.py`) | {pr:,.0f} | {pc:.0f} "
        f"| {pu:.0f} |",
        f"| `echo --driver mio` | {mr:,.0f} | {mc:.0f} | {mu:.0f} |",
        f"| ours : Python | {ratio(mr, pr)} | **{mc / pc:.3f}** | **{mu / pu:.3f}** |"])


# ---------------------------------------------------------------------------------------------
# Threads


def threads():
    out = ["| driver | lines/s, 1 thread | lines/s, 2 threads | 2 : 1 | CPU ns/line, 1 thread "
           "| CPU ns/line, 2 threads |", "|---|---|---|---|---|---|"]
    for driver in DRIVERS:
        runs = {}
        for round_no in range(2):
            for n in in_turn((1, 2), round_no):
                with ours("echo", driver, "--threads", str(n)) as server:
                    rate, cpu, _ = echo_load(server)
                runs.setdefault(n, []).append((rate, cpu))
        got = {n: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
               for n, v in runs.items()}
        (r1, c1), (r2, c2) = got[1], got[2]
        out.append(f"| {driver} | {r1:,.0f} | {r2:,.0f} | {ratio(r2, r1)} | {c1:.0f} | {c2:.0f} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# resp against redis-server


RESP_TESTS = ["ping", "set", "get", "incr", "lpush", "mset"]


def redis_benchmark(port, test, pipeline, requests):
    csv = run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50",
               "-n", str(requests), "-P", str(pipeline), "-t", test, "-r", "100000", "--csv"])
    rows = [r for r in csv.splitlines() if r and not r.startswith('"test"')]
    rps = statistics.mean(float(r.split(",")[1].strip('"')) for r in rows)
    return rps, requests * len(rows)


def resp(targets):
    servers = [("redis-server", None)] + [("resp", d) for d in DRIVERS]
    results = {}  # (server, test, pipeline) -> [(rps, cpu ns/request)], one per round
    for round_no in range(ROUNDS):
        # All four run at once, idle but for the one under load, so each test of each round
        # measures them seconds apart, in turn: requests/s without pipelining moves with the
        # machine's load from one minute to the next.
        with contextlib.ExitStack() as running:
            started = []
            for name, driver in servers:
                if driver is None:
                    port = free_port()
                    server = Server(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--protected-mode",
                                     "no"], port)
                else:
                    server = ours("resp", driver)
                started.append((name if driver is None else f"resp, {driver}",
                                running.enter_context(server)))
            turn = round_no
            for pipeline, requests in ((16, 600_000), (1, 100_000)):
                for test in RESP_TESTS:
                    turn += 1
                    for label, server in in_turn(started, turn):
                        before = server.cpu()
                        # An MSET sets 10 keys: a fifth as many keep its run as short as the rest.
                        n = requests // 5 if test == "mset" else requests
                        rps, done = redis_benchmark(server.port, test, pipeline, n)
                        ns = (server.cpu() - before) * 1e9 / done
                        results.setdefault((label, test, pipeline), []).append((rps, ns))
    med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
           for k, v in results.items()}

    def round_ratios(label, test, pipeline):
        """Ours : redis-server's within each round, requests/s and CPU per request."""
        ours_runs, theirs = results[(label, test, pipeline)], results[("redis-server", test,
                                                                       pipeline)]
        return ([r / rr for (r, _), (rr, _) in zip(ours_runs, theirs)],
                [c / rc for (_, c), (_, rc) in zip(ours_runs, theirs)])

    out = []
    for pipeline, what in ((16, "pipelined (`-P 16`)"), (1, "not pipelined (`-P 1`)")):
        out.append(f"\n{what}, 50 connections: requests/s, server CPU ns per request, and the "
                   "ratios to redis-server's\n")
        head = "| test | redis-server rps | redis-server CPU ns |"
        for d in DRIVERS:
            head += f" resp {d} rps | CPU ns | rps ratio | CPU ratio |"
        out += [head, "|---|---|---|" + "---|---|---|---|" * len(DRIVERS)]
        for test in RESP_TESTS:
            rr, rc = med[("redis-server", test, pipeline)]
            row = f"| {test.upper()} | {rr:,.0f} | {rc:.0f} |"
            for d in DRIVERS:
                r, c = med[(f"resp, {d}", test, pipeline)]
                rps_rounds, cpu_rounds = round_ratios(f"resp, {d}", test, pipeline)
                rps_ratio, cpu_ratio = (statistics.median(x) for x in (rps_rounds, cpu_rounds))
                row += f" {r:,.0f} | {c:.0f} | **{rps_ratio:.2f}** | **{cpu_ratio:.2f}** |"
                if pipeline == 16:
                    targets.append((f"resp on {d}, {test.upper()} `-P 16`: CPU per request",
                                    "≤ 1.0×", times(cpu_ratio, 1.0), verdict(cpu_ratio, 1.0),
                                    spread(cpu_rounds)))
                else:
                    targets.append((f"resp on {d}, {test.upper()} `-P 1`: requests/s", "≥ 1.0×",
                                    times(rps_ratio, 1.0), verdict(rps_ratio, 1.0, False),
                                    spread(rps_rounds) + "; redis-benchmark shares the two "
                                    "cores"))
            out.append(row)
    return "\n".join(out).strip()


# ---------------------------------------------------------------------------------------------
# httpd against nginx


NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    # What httpd's own file cache does (`httpd::FILE_CACHE_VALID`), for a like-for-like figure.
    open_file_cache max=1024 inactive=20s;
    open_file_cache_valid 1s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def wrk(port, seconds):
    out = run(["wrk", "-t1", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/1k.html"])
    total = int(re.search(r"(\d+) requests in", out)[1])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw errors:\n" + out)
    return rps, total


def httpd(targets):
    work = pathlib.Path(tempfile.mkdtemp(prefix="asynchat-bench-"))
    try:
        root = work / "www"
        root.mkdir()
        (root / "1k.html").write_bytes(b"x" * 1023 + b"\n")
        os.chmod(work, 0o755)
        results = {}
        for round_no in range(ROUNDS):
            for driver in in_turn([None] + DRIVERS, round_no):
                if driver is None:
                    port = free_port()
                    conf = work / "nginx.conf"
                    conf.write_text(NGINX_CONF.format(dir=work, port=port, root=root))
                    server = Server(["nginx", "-c", conf, "-p", work], port, extra_pids=True)
                    label = "nginx"
                else:
                    server = ours("httpd", driver, "--root", root)
                    label = driver
                with server:
                    wrk(server.port, 1)  # warm-up: caches, connection set-up
                    before = server.cpu()
                    rps, total = wrk(server.port, 4)
                    ns = (server.cpu() - before) * 1e9 / total
                results.setdefault(label, []).append((rps, ns))
        med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
               for k, v in results.items()}
        nr, nc = med["nginx"]
        out = ["| server | requests/s | server CPU ns per request | rps ratio | CPU ratio |",
               "|---|---|---|---|---|", f"| nginx, one worker | {nr:,.0f} | {nc:.0f} | | |"]
        for d in DRIVERS:
            r, c = med[d]
            out.append(f"| httpd, {d} | {r:,.0f} | {c:.0f} | {ratio(r, nr)} | {ratio(c, nc)} |")
            rounds = [ours_cpu / nginx_cpu
                      for (_, ours_cpu), (_, nginx_cpu) in zip(results[d], results["nginx"])]
            targets.append((f"httpd on {d} against nginx: CPU per request", "≤ 1.0×",
                            times(c / nc, 1.0), verdict(c / nc, 1.0), spread(rounds)))
        return "\n".join(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------


def idle(targets):
    table = run([BIN / "echo_bench", "idle", "5000"], cwd=ROOT).strip()
    limits = {"asynchat": ("mio", 512), "tokio": ("tokio", 1536), "smol": ("smol", 1536)}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if cells and cells[0] in limits:
            driver, limit = limits[cells[0]]
            per = float(re.match(r"[\d.]+", cells[3].replace(",", ""))[0])
            targets.append((f"idle connection on {driver}: RSS", f"≤ {limit} B", f"{per:.0f} B",
                            verdict(per, limit), "—"))
    return table


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in
                pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = int(pathlib.Path("/proc/meminfo").read_text().split()[1]) / 2**20
    rustc = run(["rustc", "--version"]).strip()
    return (f"{os.cpu_count()} × {cpu}, {mem:.0f} GiB, Linux {platform.release()}; {rustc}; "
            f"redis-server {run(['redis-server', '--version']).split()[2].removeprefix('v=')}, "
            f"{subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip()}, "
            f"{run([sys.executable, '--version']).strip()}")


def main():
    started = time.monotonic()
    targets = []
    sections = [
        ("Framing", "Frames from 16 MiB of lines fed in 64 KiB chunks (criterion, `cargo bench "
         "-p asynchat-core --bench framer`), against tokio-util's `LinesCodec` and Python 3.11's "
         "`asynchat` on the same input (`core/benches/python_asynchat.py`), one core each.",
         lambda: framing(targets)),
        ("Echo, pipelined", "The `echo` example's protocol with the default `Config`, on each "
         "driver, against the plain server a user of that runtime would write; 50 connections × "
         "16 lines of 64 B in flight (`echo_bench compare 3 3 raw,tokio-framed,smol-plain 16`). The load generator (one "
         "thread) shares the two cores with the server: it limits lines/s, not CPU per line.",
         lambda: echo_table(["3", "3", "raw,tokio-framed,smol-plain", "16"], targets,
                            "pipelined")),
        ("Echo against Python's asynchat", "The same pipelined load against the echo server "
         "Python 3.11's `asyncore` and `asynchat` give (`scripts/python_echo.py`), median of 2 "
         "runs of 4 s. The kernel's work per line (the reads, writes and wake-ups both servers ask "
         "for) bounds the ratio of the whole CPU time; the user-space column is what each "
         "implementation costs on its own.",
         lambda: python_echo(targets)),
        ("Echo, request/response", "The same servers, 50 connections × 1 line in flight "
         "(`echo_bench compare 3 3 raw,tokio-framed,smol-plain 1`): a system call or two per line, "
         "so the kernel's work dominates.",
         lambda: echo_table(["3", "3", "raw,tokio-framed,smol-plain", "1"], targets,
                            "request/response")),
        ("Echo over TLS", "The same echo over TLS 1.3 on each driver against tokio-rustls with "
         "`Framed`: one certificate (ECDSA P-256), one rustls configuration (`ring`) "
         "(`echo_bench compare 3 3 tokio-rustls`).",
         lambda: echo_table(["3", "3", "tokio-rustls"], [], "TLS")),
        ("1 and 2 threads", "`echo --threads N` on each driver under the pipelined load "
         "(`echo_bench load`), median of 2 runs of 4 s. The load generator holds one of the two "
         "cores, so a second server thread has no core of its own here.",
         threads),
        ("resp against redis-server", "`resp` (one thread) and redis-server (no persistence), "
         "each driven by `redis-benchmark -c 50 -r 100000 -t TEST` (600 000 requests a test "
         "pipelined, 100 000 not, a fifth as many MSETs). In each of 3 rounds the four servers "
         "run at once and take each test in turn, seconds apart; the ratios are the medians of "
         "the rounds' ratios. redis-benchmark shares the two cores with the server, and "
         "requests/s without pipelining moves by a third from run to run on this machine "
         "(server CPU per request, the stable figure, by about 5 %).",
         lambda: resp(targets)),
        ("httpd against nginx", "A 1 KiB file, `wrk -t1 -c50` for 4 s after 1 s of warm-up, "
         "median of 3 alternating rounds; nginx with one worker, `sendfile`, `open_file_cache` "
         "(valid for 1 s, as httpd's), no access log. wrk "
         "shares the two cores with the server.",
         lambda: httpd(targets)),
        ("Idle memory", "Growth of the server's resident memory per idle connection, 5 000 "
         "connections that each echoed one line (`echo_bench idle 5000`).",
         lambda: idle(targets)),
    ]
    # BENCH_ONLY=title,title... runs only the sections whose titles start so (lower case), to
    # look at one family; BENCHMARKS.md itself comes from a whole run.
    only = [t.strip().lower() for t in os.environ.get("BENCH_ONLY", "").split(",") if t.strip()]
    body = []
    for title, what, measure in sections:
        if only and not any(title.lower().startswith(t) for t in only):
            continue
        log(f"== {title}")
        section_started = time.monotonic()
        body.append(f"## {title}\n\n{what}\n\n{measure()}\n")
        log(f"   {title}: {time.monotonic() - section_started:.0f} s")
    minutes = (time.monotonic() - started) / 60
    print("# Benchmarks\n")
    print("Every figure below comes from one run of `scripts/bench-all > BENCHMARKS.md` "
          f"(about {minutes:.0f} minutes here), which measures each table side by side. Server CPU "
          "time per request (user and system, from `/proc/PID/stat`) is the stable figure, about "
          "±5 % from run to run; requests per second moves ±15 % on this shared machine. Why each "
          "optimisation exists is in the core's manual (`asynchat_core::manual::performance`).\n")
    print(f"- **Machine:** {machine()}")
    print(f"- **Date:** {datetime.date.today().isoformat()}\n")
    print("## Against the targets\n")
    print("Each figure with what bounds it, from the same run: the user-space and kernel CPU of "
          "ours and of the baseline, or the range of the rounds' ratios (how far this machine's "
          "noise reaches).\n")
    print("| figure | target | measured | | what limits it |\n|---|---|---|---|---|")
    for row in targets:
        print("| " + " | ".join(row) + " |")
    print()
    print("\n".join(body), end="")


if __name__ == "__main__":
    main()
