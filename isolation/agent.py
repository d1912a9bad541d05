"""What runs inside a namespace during verification: listeners, probes, spoofers.

Started as ``ip netns exec NS python -m certify.isolation.agent MODE`` so that
it is born inside the namespace (scapy must be imported after entering it).
It reads one JSON job from stdin and writes JSON to stdout. Every loop is
bounded in count and time.
"""

from __future__ import annotations

import errno
import json
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
from typing import Any

# Both outside ip_local_port_range (32768-60999), so never a kernel socket's, and apart from each other:
# a sniffer marks only crafted packets, and no honest probe can pass for one.
SPOOF_SPORTS = range(65000, 65536)
SYN_SPORTS = range(61000, 65000)
MAX_TARGETS = 5000


# ---------------------------------------------------------------------------- listen


def listen(job: dict[str, Any]) -> None:
    """Accept TCP, echo UDP, and record marked packets arriving on eth0, until stdin closes."""
    stop = threading.Event()
    marked: list[dict[str, Any]] = []
    sockets = []
    for port in job.get("tcp", []):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        s.setblocking(False)
        sockets.append(("tcp", s))
    for port in job.get("udp", []):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        sockets.append(("udp", s))
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sniffer.bind(("eth0", 0))
    sniffer.settimeout(0.2)

    def serve() -> None:
        sel = selectors.DefaultSelector()
        for kind, s in sockets:
            sel.register(s, selectors.EVENT_READ, kind)
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                try:
                    if key.data == "tcp":
                        conn, _ = key.fileobj.accept()
                        conn.close()
                    else:
                        data, peer = key.fileobj.recvfrom(2048)
                        key.fileobj.sendto(data, peer)
                except OSError:
                    pass

    def sniff() -> None:
        while not stop.is_set():
            try:
                frame = sniffer.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            packet = _marked(frame[14:])
            if packet is not None and len(marked) < 10000:
                marked.append(packet)

    threads = [threading.Thread(target=serve, daemon=True), threading.Thread(target=sniff, daemon=True)]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print(json.dumps({"marked": marked}), flush=True)
    stop.set()


def _marked(ip: bytes) -> dict[str, Any] | None:
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 0xF) * 4
    if len(ip) < ihl + 4:
        return None
    sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
    if sport not in SPOOF_SPORTS:
        return None
    return {"src": socket.inet_ntoa(ip[12:16]), "dst": socket.inet_ntoa(ip[16:20]), "sport": sport, "dport": dport}


# ---------------------------------------------------------------------------- probe


def _settle(sel: selectors.BaseSelector, timeout: float, outcome: Any) -> dict[int, str]:
    """Wait for the registered sockets until the deadline; silence is 'blocked'."""
    out: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while sel.get_map() and (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(timeout=left):
            out[key.data] = outcome(key.fileobj)
            sel.unregister(key.fileobj)
            key.fileobj.close()
    for key in list(sel.get_map().values()):
        out[key.data] = "blocked"
        key.fileobj.close()
    return out


def _kernel_tcp(targets: list[dict[str, Any]], timeout: float) -> dict[int, str]:
    """connect() to every target at once: 'open', 'closed' (RST: reachable) or 'blocked' (silence)."""
    sel = selectors.DefaultSelector()
    out: dict[int, str] = {}
    for t in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((t["dst"], t["port"]))
        if rc in (0, errno.EINPROGRESS):
            sel.register(s, selectors.EVENT_WRITE, t["id"])
        else:
            out[t["id"]] = "closed" if rc == errno.ECONNREFUSED else "blocked"
            s.close()

    def outcome(s: socket.socket) -> str:
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return "open" if err == 0 else "closed" if err == errno.ECONNREFUSED else "blocked"

    return {**out, **_settle(sel, timeout, outcome)}


def _kernel_udp(targets: list[dict[str, Any]], timeout: float) -> dict[int, str]:
    """A datagram to every target: an echo is 'open', port-unreachable 'closed', silence 'blocked'."""
    sel = selectors.DefaultSelector()
    for t in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((t["dst"], t["port"]))
        s.send(b"certify-probe")
        sel.register(s, selectors.EVENT_READ, t["id"])

    def outcome(s: socket.socket) -> str:
        try:
            s.recv(2048)
            return "open"
        except ConnectionRefusedError:
            return "closed"
        except OSError:
            return "blocked"

    return _settle(sel, timeout, outcome)


def _scapy(targets: list[dict[str, Any]], timeout: float) -> dict[int, str]:
    """A crafted SYN (or echo request) per target, sent and matched by scapy: independent of the kernel's TCP."""
    if not targets:
        return {}
    # Imported here, inside the namespace; the few modules needed, not scapy.all (a third of the start-up).
    from scapy.config import conf
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.sendrecv import sr

    conf.verb = 0
    packets, ids = [], []
    base = random.randrange(len(SYN_SPORTS) - len(targets)) if len(targets) < len(SYN_SPORTS) else 0
    for i, t in enumerate(targets):
        if t["proto"] == "tcp":
            packets.append(IP(dst=t["dst"]) / TCP(sport=SYN_SPORTS[base + i], dport=t["port"], flags="S", seq=random.getrandbits(32)))
        else:
            packets.append(IP(dst=t["dst"]) / ICMP(id=0xCE7 + (base + i) % 1000, seq=i))
        ids.append(t["id"])
    answered, _ = sr(packets, timeout=timeout, verbose=0)
    out = {i: "blocked" for i in ids}
    for sent, reply in answered:
        if sent.haslayer(TCP):
            n = sent[TCP].sport - SYN_SPORTS[base]
        else:
            n = sent[ICMP].seq
        if not 0 <= n < len(ids):
            continue
        if reply.haslayer(TCP):
            flags = int(reply[TCP].flags)
            out[ids[n]] = "open" if flags & 0x12 == 0x12 else "closed" if flags & 0x04 else "blocked"
        elif reply.haslayer(ICMP) and reply[ICMP].type == 0:
            out[ids[n]] = "open"
    return out


def _round(targets: list[dict[str, Any]], timeout: float) -> dict[str, dict[int, str]]:
    tcp = [t for t in targets if t["proto"] == "tcp"]
    udp = [t for t in targets if t["proto"] == "udp"]
    icmp = [t for t in targets if t["proto"] == "icmp"]
    result: dict[str, dict[int, str]] = {"kernel": {}, "scapy": {}}
    kernel = threading.Thread(target=lambda: result["kernel"].update({**_kernel_tcp(tcp, timeout), **_kernel_udp(udp, timeout)}))
    kernel.start()
    result["scapy"] = _scapy(tcp + icmp, timeout)
    kernel.join()
    return result


def probe(job: dict[str, Any]) -> None:
    """Probe every target; probe the negative ones once more (a dropped SYN can be a slow start); then spoof."""
    targets = job["targets"][:MAX_TARGETS]
    timeout = float(job.get("timeout", 1.5))
    result = _round(targets, timeout)
    for _ in range(int(job.get("retries", 1))):
        negative = [t for t in targets if "blocked" in (result["kernel"].get(t["id"]), result["scapy"].get(t["id"]))]
        if not negative:
            break
        again = _round(negative, timeout)
        for way in ("kernel", "scapy"):
            result[way].update(again[way])
    answer: dict[str, Any] = {k: {str(i): v for i, v in d.items()} for k, d in result.items()}
    if job.get("spoof"):
        answer["sent"] = spoof(job["spoof"])
    print(json.dumps(answer), flush=True)


# ---------------------------------------------------------------------------- spoof


def spoof(job: dict[str, Any]) -> int:
    """Send crafted SYNs with forged source addresses or MACs; the destinations' sniffers say what arrived."""
    from scapy.config import conf
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether, getmacbyip

    conf.verb = 0
    copies = int(job.get("copies", 3))
    # The router tells us its port's MAC; asking ARP from here can time out under load.
    gateway_mac = job.get("gateway_mac") or (getmacbyip(job["gateway"]) if job.get("gateway") else None)
    l3 = conf.L3socket()
    l2 = conf.L2socket(iface="eth0") if gateway_mac else None
    sent = 0
    try:
        for p in job["packets"][:200]:
            segment = IP(src=p["src"], dst=p["dst"]) / TCP(sport=p["sport"], dport=p["dport"], flags="S")
            if p.get("src_mac"):
                if l2 is None:
                    raise OSError(f"no MAC for the gateway {job.get('gateway')}: cannot send a forged frame")
                frame = Ether(src=p["src_mac"], dst=gateway_mac) / segment
                for _ in range(copies):
                    l2.send(frame)
            else:
                for _ in range(copies):
                    l3.send(segment)
            sent += copies
    finally:
        l3.close()
        if l2 is not None:
            l2.close()
    return sent


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "listen":
        listen(json.loads(sys.argv[2]))
        return 0
    if mode == "probe":
        probe(json.loads(sys.stdin.read()))
        return 0
    print("usage: python -m certify.isolation.agent listen JSON | probe  (inside a namespace)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
