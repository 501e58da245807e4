"""Python 3.11 asynchat on the framer benchmark's workload, for the ratio in BENCHMARKS.md.

Feeds lines of 16, 64 and 1024 bytes in 4 KiB and 64 KiB chunks, terminators \\n and \\r\\n, through
async_chat.handle_read with recv replaced (no socket), collecting with the stdlib's own helpers
(_collect_incoming_data / _get_data), as a protocol written the documented way does.
Prints one JSON object: {"lf/line16/chunk4k": bytes_per_second, ...}. BENCH_MIB sets the size
(default 16: Python is slow, and throughput does not depend on the total).
"""
import json
import os
import sys
import time
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import asynchat  # noqa: E402


class Collector(asynchat.async_chat):
    def __init__(self, delim, chunks):
        asynchat.async_chat.__init__(self)
        self.ac_in_buffer_size = len(chunks[0]) if chunks else 4096
        self.set_terminator(delim)
        self.chunks = iter(chunks)
        self.frames = 0

    def recv(self, n):
        return next(self.chunks)

    collect_incoming_data = asynchat.async_chat._collect_incoming_data

    def found_terminator(self):
        self._get_data()
        self.frames += 1


def lines(total, line, delim):
    body = bytes(97 + i % 26 for i in range(line - len(delim))) + delim
    return body * (total // line)


def main():
    mib = int(os.environ.get("BENCH_MIB", "16"))
    out = {}
    for name, delim in (("lf", b"\n"), ("crlf", b"\r\n")):
        for line in (16, 64, 1024):
            data = lines(mib << 20, line, delim)
            for chunk in (4 << 10, 64 << 10):
                chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
                best = float("inf")
                for _ in range(2):
                    c = Collector(delim, chunks)
                    t = time.perf_counter()
                    for _ in chunks:
                        c.handle_read()
                    best = min(best, time.perf_counter() - t)
                    assert c.frames == len(data) // line, (c.frames, len(data) // line)
                out[f"{name}/line{line}/chunk{chunk >> 10}k"] = len(data) / best
                print(f"python {name} line {line} chunk {chunk >> 10}k: "
                      f"{len(data) / best / 1e9:.3f} GB/s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
