"""Hostile clients against a running squall (run by tools/hostile-probe, which says what each mode does).
usage: hostile_probe.py HOST PORT AUTH_HEADER PID MODE N [CONCURRENCY]"""
import resource, socket, sys, time, os
host, port, auth, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss(): 
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
def fds(): return len(os.listdir(f"/proc/{pid}/fd"))
def legit():
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /api/v1/users/me HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b: break
        data += b
    s.close()
    return data[:12].decode(), round((time.time() - t) * 1000, 1)
def open_alive(socks):
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            b = s.recv(1)
            if b == b"": continue
            alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive
mode = sys.argv[5]
if mode == "flood":
    n = int(sys.argv[6])
    print("before: rss MB", rss(), "fds", fds())
    socks = []
    t = time.time()
    for i in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError as e:
            print("connect failed at", i, e); break
    print(f"opened {len(socks)} silent connections in {time.time()-t:.1f}s; server fds {fds()} rss MB {rss()}")
    for _ in range(3):
        print("legit request while flooded:", legit())
    time.sleep(1)
    print("still open after ~1 s:", open_alive(socks))
    time.sleep(12)
    print("still open after ~13 s:", open_alive(socks), "server fds", fds(), "rss MB", rss())
elif mode == "slowloris":
    n = int(sys.argv[6])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for s in socks: s.sendall(b"GET /api/v1/users/me HTTP/1.1\r\n")
    t = time.time()
    while time.time() - t < 75:
        for s in socks:
            try: s.sendall(b"X")
            except OSError: pass
        alive = open_alive(socks)
        print(f"t={time.time()-t:.0f}s open {alive}")
        if alive == 0: break
        time.sleep(5)
elif mode == "bodies":
    n = int(sys.argv[6])
    print("before: rss MB", rss())
    socks = []
    chunk = b"a" * 65536
    sent_total = 0
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"POST /api/v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Length: 16000000\r\n\r\n".encode())
        s.settimeout(0.5)
        sent = 0
        try:
            while sent < 15_000_000:
                s.sendall(chunk); sent += len(chunk)
        except OSError:
            pass
        sent_total += sent
        socks.append(s)
    print(f"{n} anonymous 16 MB bodies, {sent_total/1e6:.0f} MB accepted by the kernel; server rss MB {rss()}")
    print("answers:", [ (s.settimeout(2), s.recv(40)[:12])[1] for s in socks[:3] ])
elif mode == "logins":
    import concurrent.futures, urllib.request, urllib.parse, collections
    n, conc = int(sys.argv[6]), int(sys.argv[7]) if len(sys.argv) > 7 else 8
    def peak():
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmHWM"): return int(l.split()[1]) // 1024
    def call(i):
        pw = "probe-password-1" if i % 2 else "wrong-password"
        data = urllib.parse.urlencode({"username": "owner@probe.example", "password": pw}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/fetch_api_key", data, headers={"Host": host})
        try:
            return urllib.request.urlopen(req, timeout=60).status
        except urllib.error.HTTPError as e:
            return e.code
    before = (rss(), peak())
    with concurrent.futures.ThreadPoolExecutor(conc) as ex:
        codes = collections.Counter(ex.map(call, range(n)))
    after = (rss(), peak())
    time.sleep(5)
    print(f"{n} logins at concurrency {conc}: answers {dict(codes)}; RSS MB before {before[0]} (peak {before[1]}), after {after[0]} (peak {after[1]}), 5 s later {rss()}")
