"""Reference side of the differential test: runs Python 3.11's asynchat.async_chat on cases read
from stdin and prints what it collected, for core/tests/python_differential.rs.

Input, one case per line:   SCHEDULE|CHUNKS
  SCHEDULE  terminators separated by ','; each 'd<hex>' (bytes), 'c<n>' (count) or 'n' (None).
            The first is set at start; each later one is set inside found_terminator.
  CHUNKS    hex of each recv() result, separated by ','.
Output, one line per case:  EVENTS|HELD
  EVENTS    ',' separated: 'D<hex>' for collect_incoming_data, 'T' for found_terminator.
  HELD      hex of ac_in_buffer when the input ran out (bytes Python holds back and, at EOF, loses).
"""
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import asynchat  # noqa: E402  (imported after silencing its deprecation warning)


def parse_terminator(item):
    if item == "n":
        return None
    if item[0] == "c":
        return int(item[1:])
    return bytes.fromhex(item[1:])


class Recorder(asynchat.async_chat):
    def __init__(self, schedule, chunks):
        asynchat.async_chat.__init__(self)  # no socket: recv is replaced below
        self.events = []
        self.schedule = schedule
        self.chunks = iter(chunks)
        self.set_terminator(self.schedule.pop(0))

    def recv(self, buffer_size):
        return next(self.chunks)

    def collect_incoming_data(self, data):
        self.events.append("D" + bytes(data).hex())

    def found_terminator(self):
        self.events.append("T")
        if self.schedule:
            self.set_terminator(self.schedule.pop(0))


def main():
    for line in sys.stdin:
        schedule_text, chunks_text = line.rstrip("\n").split("|")
        schedule = [parse_terminator(t) for t in schedule_text.split(",")]
        chunks = [bytes.fromhex(c) for c in chunks_text.split(",")] if chunks_text else []
        chat = Recorder(schedule, chunks)
        for _ in chunks:
            chat.handle_read()
        print(",".join(chat.events) + "|" + chat.ac_in_buffer.hex())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
