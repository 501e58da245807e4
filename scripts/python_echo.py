"""The echo server as Python 3.11's asyncore and asynchat write it, for the ratio in BENCHMARKS.md:
every line back, its terminator included, collected the documented way. Usage: python_echo.py PORT"""
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import asynchat  # noqa: E402
import asyncore  # noqa: E402


class Echo(asynchat.async_chat):
    def __init__(self, sock):
        super().__init__(sock)
        self.set_terminator(b"\n")
        self.data = []

    def collect_incoming_data(self, data):
        self.data.append(data)

    def found_terminator(self):
        self.push(b"".join(self.data) + b"\n")
        self.data = []


class Server(asyncore.dispatcher):
    def __init__(self, port):
        super().__init__()
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", port))
        self.listen(128)

    def handle_accepted(self, sock, addr):
        Echo(sock)


Server(int(sys.argv[1]))
asyncore.loop(use_poll=True)
