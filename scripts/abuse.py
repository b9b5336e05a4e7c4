"""Health probes under abuse (scripts/bench-hardening.sh probes): against a `thrum serve -p
zoo:mlp` at HOST:PORT, 3,000 clients send a request head and one byte of a 1,000-byte body and
stall; three clients send 60 MiB JSON inference requests; meanwhile /v2/health/live is probed
every 20 ms on a new connection. Prints the probes' latency (median, P99, worst) and what the
slow clients saw (how many were answered 408 and when).

    python3 abuse.py HOST:PORT [SLOW_CLIENTS]
"""

import socket
import sys
import threading
import time


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=120)
    return s


def main():
    addr = sys.argv[1]
    slow_count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    slow = []
    for _ in range(slow_count):
        s = connect(addr)
        s.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{")
        slow.append(s)
    rows = 245_760  # [rows, 64] = 15.7 M numbers of 4 bytes ("0.5,"): 60 MiB of JSON
    numbers = ",".join(["0.5"] * (rows * 64))
    body = ('{"inputs":[{"name":"input","shape":[%d,64],"datatype":"FP32","data":[%s]}]}'
            % (rows, numbers)).encode()
    statuses = []

    def heavy():
        s = connect(addr)
        s.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  + b"Content-Length: %d\r\n\r\n" % len(body))
        s.sendall(body)
        statuses.append(s.recv(12).decode(errors="replace"))
        s.close()

    started = time.monotonic()
    threads = [threading.Thread(target=heavy) for _ in range(3)]
    for t in threads:
        t.start()
    latencies = []
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        s = connect(addr)
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = s.recv(64)
        latencies.append(time.monotonic() - t0)
        s.close()
        if not answer.startswith(b"HTTP/1.1 200"):
            print("probe answered", answer[:40])
        time.sleep(0.02)
    heavy_s = time.monotonic() - started
    latencies.sort()
    ms = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    print(f"{len(latencies)} probes while {slow_count} clients stalled and three {len(body) / 2**20:.0f} MiB "
          f"JSON requests ran ({heavy_s:.1f} s; answered {statuses}): median {ms(0.5):.2f} ms, "
          f"P99 {ms(0.99):.2f} ms, worst {1000 * latencies[-1]:.2f} ms")
    # The stalled clients: answered 408 once the body timeout passes.
    t0 = time.monotonic()
    got = {}
    for s in slow:
        s.settimeout(max(1.0, 120 - (time.monotonic() - t0)))
        try:
            head = s.recv(12).decode(errors="replace") or "closed"
        except OSError as e:
            head = type(e).__name__
        got[head] = got.get(head, 0) + 1
        s.close()
    print(f"the {slow_count} stalled clients got: {got}, the last {time.monotonic() - started:.1f} s after the start")


if __name__ == "__main__":
    main()
