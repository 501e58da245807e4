"""Soak test of the echo example on every driver: random newline-terminated lines pushed through
real loopback sockets with random write and read sizes, checked byte for byte (sha256) on the way
back. Three runs per driver, each against a fresh server so its peak RSS and CPU time are its own:

  bulk        one connection, --bytes (default 1 GiB)
  concurrent  --conns connections at once, --conn-bytes each (default 4 x 256 MiB)
  halfclose   --halfclose-bytes sent at full speed, then shutdown(SHUT_WR), read back slowly: the
              server's close_when_done must flush everything queued, then end with EOF, not a reset

Every run ends with the client's half-close, so the server's graceful close is always part of
it. Takes minutes per driver, hence not in CI. Usage: scripts/soak [options] (see --help).
"""

import argparse
import hashlib
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MAX_LINE = 4096
MAX_IO = 256 * KiB
# A hash mismatch alone says nothing about where; per-window CRCs narrow it to one MiB.
WINDOW = MiB
BLOCK = MiB
POOL = 32 * MiB
NO_NEWLINE = bytes.maketrans(b"\n", b"\x0b")
TESTS = ("bulk", "concurrent", "halfclose")
DRIVERS = ("mio", "tokio", "smol")
STOP_GRACE = 10.0
TCP_STATES = {"01": "ESTABLISHED", "04": "FIN-WAIT-1", "05": "FIN-WAIT-2", "06": "TIME-WAIT",
              "07": "CLOSE", "08": "CLOSE-WAIT", "09": "LAST-ACK", "0B": "CLOSING"}


class Failure(Exception):
    pass


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 256M, 64KiB, 1000)")
    scale = {"": 1, "K": KiB, "M": MiB, "G": GiB}[m.group(2).upper()]
    return int(m.group(1)) * scale


def show_size(n):
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


_pools = {}
_pools_lock = threading.Lock()


def payload_pool(seed):
    # random.randbytes for every line would cap the client near 150 MB/s, below what the
    # server can take; slices of one random pool at random offsets keep every line's bytes
    # random and distinct for a fraction of the cost.
    with _pools_lock:
        if seed not in _pools:
            rng = random.Random(f"{seed}/pool")
            pool = b"".join(rng.randbytes(MiB) for _ in range(POOL // MiB))
            _pools[seed] = pool.translate(NO_NEWLINE)
        return _pools[seed]


def lines(seed, label, total):
    """Blocks of about BLOCK bytes that together are exactly `total` bytes of whole lines."""
    rng = random.Random(f"{seed}/{label}/data")
    pool = payload_pool(seed)
    span = len(pool) - MAX_LINE
    left = total
    while left:
        parts, size = [], 0
        while size < BLOCK and size < left:
            n = min(rng.randrange(MAX_LINE + 1), left - size - 1)
            off = rng.randrange(span)
            parts.append(pool[off:off + n])
            size += n + 1
        parts.append(b"")
        block = b"\n".join(parts)
        left -= len(block)
        yield block


def io_size(rng):
    # Log-uniform: a uniform pick over 1 B .. 256 KiB would almost never be a tiny write, and
    # tiny writes are what split lines and terminators in awkward places.
    return min(MAX_IO, int(2 ** rng.uniform(0, 18)))


def maybe_pause(rng):
    if rng.random() < 1 / 256:
        time.sleep(rng.uniform(0, 0.002))


class Digest:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.count = 0
        self.crcs = []
        self._crc = 0

    def update(self, data):
        self.sha.update(data)
        view = memoryview(data)
        while view:
            room = WINDOW - self.count % WINDOW
            piece = view[:room]
            self._crc = zlib.crc32(piece, self._crc)
            self.count += len(piece)
            view = view[room:]
            if self.count % WINDOW == 0:
                self.crcs.append(self._crc)
                self._crc = 0

    def windows(self):
        return self.crcs + ([self._crc] if self.count % WINDOW else [])


def first_difference(a, b):
    wa, wb = a.windows(), b.windows()
    for i, (x, y) in enumerate(zip(wa, wb)):
        if x != y:
            return i * WINDOW
    return min(len(wa), len(wb)) * WINDOW


class Transfer:
    """One connection: a writer thread sends `total` bytes of lines and half-closes, a reader
    thread reads until EOF."""

    def __init__(self, addr, seed, label, total, opts, slow):
        self.label, self.total, self.opts, self.slow = label, total, opts, slow
        self.seed = seed
        self.sent, self.received = Digest(), Digest()
        self.error = None
        self.eof = False
        self.backlog_at_shutdown = None
        self.last_byte_at = None
        self._lock = threading.Lock()
        self.sock = socket.create_connection(addr, timeout=opts.stall)
        self.threads = [
            threading.Thread(target=self._guard, args=(self._write,), daemon=True),
            threading.Thread(target=self._guard, args=(self._read,), daemon=True),
        ]

    def start(self):
        for t in self.threads:
            t.start()

    def alive(self):
        return any(t.is_alive() for t in self.threads)

    def fail(self, reason):
        with self._lock:
            if self.error is None:
                self.error = reason

    def abort(self, reason):
        if not self.alive():
            return
        self.fail(reason)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _guard(self, body):
        try:
            body()
        except Failure as e:
            self.abort(str(e))
        except OSError as e:
            self.abort(f"{body.__name__.strip('_')}: {e!r}")

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise Failure(f"send blocked for {self.opts.stall:g}s after {self.sent.count} bytes "
                          f"generated, {self.received.count} received") from None

    def _write(self):
        rng = random.Random(f"{self.seed}/{self.label}/write")
        # The half-close run wants the server's queue as full as it can get when the FIN
        # arrives, so it writes as fast as it can.
        want = MAX_IO if self.slow else io_size(rng)
        buf = b""
        for block in lines(self.seed, self.label, self.total):
            self.sent.update(block)
            buf = buf + block if buf else block
            view, pos = memoryview(buf), 0
            while len(buf) - pos >= want:
                self._send(view[pos:pos + want])
                pos += want
                if not self.slow:
                    want = io_size(rng)
                    maybe_pause(rng)
            del view
            buf = buf[pos:]
        if buf:
            self._send(buf)
        self.backlog_at_shutdown = self.sent.count - self.received.count
        self.sock.shutdown(socket.SHUT_WR)

    def _read(self):
        rng = random.Random(f"{self.seed}/{self.label}/read")
        buf = memoryview(bytearray(MAX_IO))
        while True:
            n = self.opts.slow_read if self.slow else io_size(rng)
            try:
                got = self.sock.recv_into(buf, n)
            except ConnectionResetError:
                raise Failure(f"connection reset after {self.received.count} of {self.total} "
                              f"bytes, before EOF") from None
            except socket.timeout:
                got = self.received.count
                if self.backlog_at_shutdown is not None and got == self.sent.count:
                    what = f"all {got} bytes back, but no EOF within {self.opts.stall:g}s"
                else:
                    what = f"nothing to read for {self.opts.stall:g}s after {got} of {self.total} bytes"
                raise Failure(f"{what}; server's side of the socket: {self.server_side()}") from None
            if not got:
                self.eof = True
                return
            self.received.update(buf[:got])
            self.last_byte_at = time.monotonic()
            if self.slow:
                time.sleep(self.opts.slow_pause_ms / 1000)
            else:
                maybe_pause(rng)

    def server_side(self):
        """The kernel's view of the server's end of this connection, which tells a server that
        never read the FIN (CLOSE-WAIT, empty queues) from one still writing or reading."""
        try:
            client_port = self.sock.getsockname()[1]
            server_port = self.sock.getpeername()[1]
            with open("/proc/net/tcp") as f:
                rows = [l.split() for l in f.readlines()[1:]]
        except OSError as e:
            return f"unknown ({e})"
        for row in rows:
            local, remote, state, queues = row[1], row[2], row[3], row[4]
            if (int(local.split(":")[1], 16) == server_port
                    and int(remote.split(":")[1], 16) == client_port):
                tx, rx = (int(q, 16) for q in queues.split(":"))
                return f"{TCP_STATES.get(state, state)}, {rx} bytes unread, {tx} unsent"
        return "gone"

    def problems(self):
        out = []
        if self.error:
            out.append(self.error)
        elif not self.eof:
            out.append("no EOF")
        at = first_difference(self.sent, self.received)
        if self.error:
            # Cut short: the counts and hashes cannot match, but corruption in what did arrive
            # is a finding of its own.
            whole = min(self.sent.count, self.received.count) // WINDOW * WINDOW
            if at < whole:
                out.append(f"bytes differ in the MiB window starting at byte {at}")
        else:
            if self.sent.count != self.total:
                out.append(f"generated {self.sent.count} bytes, meant {self.total}")
            if self.received.count != self.sent.count:
                out.append(f"received {self.received.count} of {self.sent.count} bytes sent")
            if self.sent.sha.digest() != self.received.sha.digest():
                out.append(f"sha256 differs; first differing MiB window starts at byte {at}")
        return [f"{self.label}: {p}" for p in out]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Server:
    def __init__(self, binary, driver):
        self.driver = driver
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary, "--driver", driver, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
            # Out of the terminal's process group: a Ctrl-C there reaches only this script,
            # whose finally then stops the server the documented way.
            start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        m = re.search(rb"listening on (127\.0\.0\.1):(\d+)", line)
        if not m:
            raise Failure(f"echo --driver {driver} did not print its address "
                          f"(first line {line!r}); stderr: {self.stderr_tail()}")
        self.addr = (m.group(1).decode(), int(m.group(2)))

    def alive(self):
        return self.proc.poll() is None

    def usage(self):
        """(peak RSS in bytes, CPU seconds) of the server, all threads."""
        pid = self.proc.pid
        with open(f"/proc/{pid}/status") as f:
            hwm = next(int(l.split()[1]) * KiB for l in f if l.startswith("VmHWM:"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # Fields 14 and 15 (utime, stime); the split starts at field 3.
        ticks = int(fields[11]) + int(fields[12])
        return hwm, ticks / os.sysconf("SC_CLK_TCK")

    def stderr_tail(self, n=5):
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-n:]) if text else "(empty)"

    def stop(self):
        """Stops the server by PID; returns a problem, or None for a clean exit."""
        if self.proc.poll() is not None:
            return f"server exited by itself with status {self.proc.returncode}"
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"server ignored SIGINT for {STOP_GRACE:g}s; killed"
        finally:
            self.proc.stdout.close()
        return None if rc == 0 else f"server exited with status {rc} after SIGINT"


class Result:
    def __init__(self, driver, test, nbytes):
        self.driver, self.test, self.nbytes = driver, test, nbytes
        self.received = 0
        self.seconds = self.moving = self.rss = self.server_cpu = self.client_cpu = None
        self.backlog = None
        self.problems = []

    @property
    def ok(self):
        return not self.problems


def client_cpu():
    t = os.times()
    return t.user + t.system


def plan(opts, test):
    """(label, bytes, slow) for every connection of a run."""
    if test == "bulk":
        return [("bulk", opts.bytes, False)]
    if test == "concurrent":
        return [(f"concurrent{i}", opts.conn_bytes, False) for i in range(opts.conns)]
    return [("halfclose", opts.halfclose_bytes, True)]


def run_one(opts, driver, test):
    conns = plan(opts, test)
    result = Result(driver, test, sum(n for _, n, _ in conns))
    server, transfers = None, []
    try:
        server = Server(opts.echo, driver)
        payload_pool(opts.seed)
        deadline = time.monotonic() + opts.timeout
        cpu0, t0 = client_cpu(), time.monotonic()
        transfers = [Transfer(server.addr, opts.seed, label, n, opts, slow)
                     for label, n, slow in conns]
        for t in transfers:
            t.start()
        while any(t.alive() for t in transfers):
            if time.monotonic() > deadline:
                for t in transfers:
                    t.abort(f"timed out after {opts.timeout:g}s with {t.received.count} of "
                            f"{t.total} bytes back")
                break
            if any(t.error for t in transfers):
                # One broken connection is the finding; the others would only run on to the
                # timeout if the server is wedged.
                for t in transfers:
                    t.abort("stopped: another connection failed")
                break
            if not server.alive():
                for t in transfers:
                    t.abort(f"server exited with status {server.proc.returncode} mid-run")
                break
            for t in transfers:
                for th in t.threads:
                    th.join(0.05)
        for t in transfers:
            for th in t.threads:
                th.join(5)
        result.seconds = time.monotonic() - t0
        # Throughput up to the last byte back, so a run whose EOF never comes still has a
        # meaningful figure.
        ends = [t.last_byte_at for t in transfers if t.last_byte_at is not None]
        result.moving = max(ends) - t0 if ends else None
        result.received = sum(t.received.count for t in transfers)
        result.client_cpu = client_cpu() - cpu0
        for t in transfers:
            result.problems += t.problems()
        if test == "halfclose":
            result.backlog = transfers[0].backlog_at_shutdown
        if server.alive():
            result.rss, result.server_cpu = server.usage()
    except (Failure, OSError) as e:
        result.problems.append(str(e))
    finally:
        for t in transfers:
            t.close()
        if server is not None:
            problem = server.stop()
            if problem:
                result.problems.append(problem)
            if result.problems:
                result.problems.append(f"server stderr: {server.stderr_tail()}")
    return result


def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def report_line(r):
    mbs = r.received / r.moving / 1e6 if r.moving else None
    rss = r.rss / MiB if r.rss is not None else None
    return (f"{r.driver:<6} {r.test:<11} {show_size(r.nbytes):>7} {fmt(r.seconds, '7.1f')} "
            f"{fmt(mbs, '8.1f')} {fmt(rss, '9.1f')} {fmt(r.server_cpu, '10.2f')} "
            f"{fmt(r.client_cpu, '10.2f')}  {'PASS' if r.ok else 'FAIL'}")


HEADER = (f"{'driver':<6} {'test':<11} {'bytes':>7} {'s':>7} {'MB/s':>8} {'RSS MiB':>9} "
          f"{'srv CPU s':>10} {'cli CPU s':>10}  result")


def reproduce(opts, r):
    sizes = {"bulk": f"--bytes {show_size(opts.bytes)}",
             "concurrent": f"--conns {opts.conns} --conn-bytes {show_size(opts.conn_bytes)}",
             "halfclose": (f"--halfclose-bytes {show_size(opts.halfclose_bytes)} "
                           f"--slow-read {opts.slow_read} --slow-pause-ms {opts.slow_pause_ms:g}")}
    return (f"scripts/soak --drivers {r.driver} --tests {r.test} --seed {opts.seed} "
            f"{sizes[r.test]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--echo", required=True, help="the echo binary (scripts/soak passes it)")
    ap.add_argument("--drivers", default=",".join(DRIVERS), help="comma-separated")
    ap.add_argument("--tests", default=",".join(TESTS), help="comma-separated: " + ", ".join(TESTS))
    ap.add_argument("--bytes", type=parse_size, default=GiB, help="bulk run (default 1G)")
    ap.add_argument("--conns", type=int, default=4, help="concurrent run's connections")
    ap.add_argument("--conn-bytes", type=parse_size, default=256 * MiB,
                    help="per concurrent connection (default 256M)")
    ap.add_argument("--halfclose-bytes", type=parse_size, default=64 * MiB, help="default 64M")
    ap.add_argument("--slow-read", type=parse_size, default=64 * KiB,
                    help="half-close run's read size (default 64K)")
    ap.add_argument("--slow-pause-ms", type=float, default=1.0,
                    help="half-close run's sleep after each read (default 1)")
    ap.add_argument("--seed", type=int, default=1, help="same seed, same bytes (default 1)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run (default 600)")
    ap.add_argument("--stall", type=float, default=60,
                    help="seconds a send or read may block before the run fails (default 60)")
    opts = ap.parse_args()
    drivers = [d for d in opts.drivers.split(",") if d]
    tests = [t for t in opts.tests.split(",") if t]
    for name, given, known in (("driver", drivers, DRIVERS), ("test", tests, TESTS)):
        bad = [g for g in given if g not in known]
        if bad:
            ap.error(f"unknown {name}: {', '.join(bad)}")
    if not 1 <= opts.slow_read <= MAX_IO:
        ap.error(f"--slow-read must be 1 .. {MAX_IO}")
    if opts.conns < 1:
        ap.error("--conns must be at least 1")

    # A SIGTERM would otherwise skip the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(f"soak: {opts.echo}, seed {opts.seed}; s = wall time of the run, MB/s = 10^6 bytes/s "
          f"up to the last byte back, RSS = server VmHWM, CPU = utime+stime", flush=True)
    print(HEADER, flush=True)
    results = []
    for driver in drivers:
        for test in tests:
            r = run_one(opts, driver, test)
            results.append(r)
            extra = ""
            if r.backlog is not None:
                extra = f"   ({r.backlog / MiB:.1f} MiB outstanding at the half-close)"
            print(report_line(r) + extra, flush=True)
            for p in r.problems:
                print(f"    {p}", flush=True)

    print("\nsummary")
    print(HEADER)
    for r in results:
        print(report_line(r))
    print()
    for driver in drivers:
        ok = all(r.ok for r in results if r.driver == driver)
        print(f"{driver:<6} {'PASS' if ok else 'FAIL'}")
    failed = [r for r in results if not r.ok]
    if failed:
        print("\nto reproduce:")
        for r in failed:
            print(f"  {reproduce(opts, r)}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        sys.exit(130)
