#!/usr/bin/env python3
"""Echoes N MiB of 4 KiB lines through a running echo server on 127.0.0.1:PORT (PID is the
server's, for its CPU time from /proc): the cost of a bulk transfer, where the turn budget
makes a connection yield every 64 KiB each way.

Usage: scripts/bulk_echo.py PORT PID MIB
"""
import socket, sys, threading, time, os
port = int(sys.argv[1]); pid = int(sys.argv[2]); total = int(sys.argv[3]) << 20
line = b"x" * 4095 + b"\n"
chunk = line * 64
s = socket.create_connection(("127.0.0.1", port))
def cpu():
    f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def writer():
    sent = 0
    while sent < total:
        s.sendall(chunk); sent += len(chunk)
t = threading.Thread(target=writer); c0 = cpu(); t0 = time.time(); t.start()
got = 0
while got < total:
    b = s.recv(1 << 20)
    if not b: break
    got += len(b)
dt = time.time() - t0; t.join(); c1 = cpu()
print(f"{total>>20} MiB echoed in {dt:.2f} s: {total/dt/1e6:.0f} MB/s, server CPU {c1-c0:.2f} s")
