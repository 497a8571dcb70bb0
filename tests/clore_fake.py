#!/usr/bin/env python3
"""A fake Clore.ai marketplace API for renderfs's tests.

Follows ../shared/design/clore-api.md, quirks included: every reply is JSON
with an integer "code" (errors come as HTTP 200), prices are per DAY for the
whole server, create_order answers only {"code":0} (no order id), a new order
shows online:false with empty pub_cluster/tcp_ports until its server comes
up, outbid spot orders simply vanish from the active my_orders list.

    clore_fake.py --key KEY [--port 0] [--scenario FILE] [--host 127.0.0.1]
                  [--rate-scale F] [--http429] [--log FILE]

Prints "listening PORT" on stdout once it accepts connections.

The scenario file (JSON; every key optional):

    {"rates": {"CLORE-Blockchain": 0.02, "bitcoin": 65000, "USD-Blockchain": 1},
     "creation_fee_usd": 0.1,          # per order: shown as creation_fee, a USD amount (as
                                       # clore-api.md says), charged to the wallet of the
                                       # order's currency at its rate
     "require_days": 0.0417,           # balance needed: fee + price * this many days
     "balance_error": "code6",         # short balance: "code6" (not_enough_balance) or "code1"
     "gpu_array_nested": false,        # gpu_array as [["name"], ...] instead of ["name", ...]
     "ints_when_integral": true,       # 60.0 is written 60 (integers vs floats vary)
     "cancel_ended_reply": "code2",    # cancelling an ended/unknown order: "code2", "ok", "code6"
     "legacy_my_servers": false,       # marketplace also carries a top-level my_servers list
     "max_lower_step": 0.1,            # set_spot_price may lower by this fraction at most
     "next_order_id": 5001,
     "servers": [{"id": 101, "gpus": 2, "gpu": "NVIDIA GeForce RTX 4090", "gpuram": 24,
                  "on_demand": {"CLORE-Blockchain": 120.5}, "spot": {"CLORE-Blockchain": 60},
                  "min_spot": {"CLORE-Blockchain": 50}, "reliability": 0.99,
                  "allowed_coins": ["CLORE-Blockchain"], "rented": false, "offline": false,
                  "ssh": {"host": "127.0.0.1", "port": 2222}, "online_after": 0.5,  # or "never"
                  "taken_on_order": false,     # create_order answers code 1, server becomes rented
                  "gpu_array_nested": null,    # per-server override
                  "omit": ["rating"],          # fields left out of this server's listing
                  "spot_offers": [{"bid": 55, "currency": "CLORE-Blockchain"}],
                  "authorized_keys": "/tmp/x/authorized_keys.0",  # see "Rented containers"
                  "on_end": ["python3", "sshnodes.py", "end-sessions", "NETNS", "PIDFILE"]}],
     "wallets": [{"name": "CLORE-Blockchain", "balance": 1000, "deposit": "...", "withdrawal_fee": 1}],
     "orders": [{"id": 77, "server": 101, "spot": false, "currency": "CLORE-Blockchain",
                 "price": 100, "ct_ago": 3600, "online": true, "image": "user/image"}]}

"orders" are the user's own rentals made by hand: they are on the account and
renderfs must never cancel them (every cancel_order is recorded).

Rented containers (for end-to-end tests whose "servers" are real sshd nodes):
    "authorized_keys"  a file path.  When create_order makes an order on that
                       server, the fake writes the order's ssh_key there (so
                       only the key the client sent logs in); when an order on
                       it ends (cancelled, outbid, /_control/end) the file is
                       rewritten with the keys of the orders still active on
                       that server, i.e. emptied.  Writes are atomic (rename).
    "keys_after"       seconds (default 0): the order's key reaches that file
                       only this long after the order shows online, as a
                       container that installs the key once it runs (sshd
                       refuses the key until then).
    "on_end"           an argv list, run without a shell when an order on that
                       server ends, e.g. sshnodes.py end-sessions NETNS PIDFILE
                       to kill the node's sessions but not its listener.  It
                       runs in a thread, never in the request handler, with a
                       10 s timeout; results are in /_control/state "on_end".

Rate limits (per key; windows multiplied by --rate-scale, default from the
RENDERFS_CLORE_RATE_SCALE environment variable, else 1): at most one request
per second across endpoints, create_order at most once per 5 s sharing that
budget.  A violation answers {"code":5} (HTTP 429 with --http429) and is
counted; it does not use up the budget.

Control endpoints (no auth, loopback clients only):
    GET  /_control/state      orders (ended ones too, with owner, end_reason, the
                              ssh_key, env and command sent, and t_created /
                              t_ended / t_keys (its key installed) as unix times
                              with fractions), cancels, cancels_refused,
                              create_attempts (every authorised create_order:
                              server, type, spotprice, code, error, t),
                              violations, forced, requests per endpoint,
                              unauthorized, wallets, on_end (runs: order, rc)
    POST /_control/outbid     {"order_id": N[, "bid": X]}  a stranger outbids a spot order
    POST /_control/offline    {"order_id": N[, "online": true]}  the order drops offline (or back)
    POST /_control/end        {"order_id": N[, "reason": "expired"]}  the host ends an order
    POST /_control/set        {"balance": {"CUR": X}, "force_code5": N, "http429": bool,
                               "pad_bytes": N, "stall_ms": N, "cancel_ended_reply": S,
                               "gpu_array_nested": bool, "balance_error": S,
                               "rate_scale": F, "server": {"id": N, ...fields}}
      force_code5 makes the next N authorised requests answer code 5 (or 429),
      counted as "forced", not as violations; pad_bytes adds that much padding to
      every reply; stall_ms delays every API reply.
      "cancel_429": N makes the next N authorised cancel_order calls answer as
      an over-the-rate-limit front proxy would (clore-api.md): HTTP 429 with a
      text body, or {"code":5} with "cancel_429_as": "code5".  Each is counted
      in "cancels_refused" (and "forced"), cancels nothing and uses up no
      rate-limit budget; other endpoints answer normally meanwhile.

The API key is compared, never logged: the log (--log) holds the method, the
path and the reply code only.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KNOWN_COINS = ("CLORE-Blockchain", "bitcoin", "USD-Blockchain")
BODY_CAP = 1 << 20
ON_END_TIMEOUT = 10.0


def num(v, integral_as_int):
    """Integers and floats vary in the real API: write 60.0 as 60."""
    if integral_as_int and isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)
    return v


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Fake:
    def __init__(self, key, scenario, rate_scale, http429, log):
        self.lock = threading.Lock()
        self.key = key
        self.sc = scenario
        self.rate_scale = rate_scale
        self.http429 = http429
        self.log = log
        self.start = time.time()
        self.rates = dict({"CLORE-Blockchain": 0.02, "bitcoin": 65000.0, "USD-Blockchain": 1.0},
                          **scenario.get("rates", {}))
        self.fee_usd = float(scenario.get("creation_fee_usd", 0.1))
        self.require_days = float(scenario.get("require_days", 1.0 / 24))
        self.balance_error = scenario.get("balance_error", "code6")
        self.nested = bool(scenario.get("gpu_array_nested", False))
        self.ints = bool(scenario.get("ints_when_integral", True))
        self.cancel_ended_reply = scenario.get("cancel_ended_reply", "code2")
        self.legacy_my_servers = bool(scenario.get("legacy_my_servers", False))
        self.max_lower_step = float(scenario.get("max_lower_step", 0.1))
        self.next_id = int(scenario.get("next_order_id", 5001))
        self.servers = {}
        for s in scenario.get("servers", []):
            s = dict(s)
            s.setdefault("gpus", 1)
            s.setdefault("gpu", "NVIDIA GeForce RTX 3090")
            s.setdefault("gpuram", 24)
            s.setdefault("on_demand", {"CLORE-Blockchain": 100.0})
            s.setdefault("spot", {c: v / 2 for c, v in s["on_demand"].items()})
            s.setdefault("min_spot", dict(s["spot"]))
            s.setdefault("reliability", 0.99)
            s.setdefault("allowed_coins", list(s["on_demand"].keys()))
            s.setdefault("rented", False)
            s.setdefault("offline", False)
            s.setdefault("ssh", {"host": "127.0.0.1", "port": 22})
            s.setdefault("online_after", 0)
            s.setdefault("mrl", 72)
            s.setdefault("omit", [])
            s["offers"] = [dict(o, offer_id=900 + i, active=True)
                           for i, o in enumerate(s.get("spot_offers", []))]
            self.servers[int(s["id"])] = s
        self.wallets = {}
        for w in scenario.get("wallets", [{"name": "CLORE-Blockchain", "balance": 1000.0}]):
            self.wallets[w["name"]] = {"base": float(w.get("balance", 0)), "charged_base": 0.0,
                                       "deposit": w.get("deposit", "dep-" + w["name"]),
                                       "withdrawal_fee": w.get("withdrawal_fee", 1.0)}
        self.orders = {}
        for o in scenario.get("orders", []):
            sid = int(o.get("server", o.get("si", 0)))
            now = time.time()
            order = self._new_order(int(o["id"]), sid, bool(o.get("spot", False)),
                                    o.get("currency", "CLORE-Blockchain"), float(o.get("price", 100.0)),
                                    o.get("image", "user/own-image"), "", owner="user")
            order["ct"] = int(now - float(o.get("ct_ago", 3600)))
            order["t_created"] = now - float(o.get("ct_ago", 3600))
            order["spend0"] = float(o.get("spend", 0.0))
            order["accrue_from"] = now
            order["creation_fee"] = 0.0
            order["fee_charged"] = 0.0
            if not o.get("online", True):
                order["online_at"] = None
            if o.get("host"):
                order["host"] = o["host"]
            if o.get("port"):
                order["port"] = int(o["port"])
            self.orders[order["id"]] = order
        self.next_id = max([self.next_id] + [i + 1 for i in self.orders])
        self.cancels = []
        self.violations = 0
        self.forced = 0
        self.force_code5 = 0
        self.cancel_429 = 0
        self.cancel_429_as = "http429"
        self.cancels_refused = 0
        self.unauthorized = 0
        self.requests = {}
        self.last_req = {}
        self.last_create = {}
        self.pad_bytes = 0
        self.stall_ms = 0
        self.create_attempts = []
        self.on_end_runs = []

    # ------------------------------------------------------------ model

    def _new_order(self, oid, sid, spot, currency, price, image, ssh_key, owner):
        s = self.servers.get(sid, {})
        now = time.time()
        after = s.get("online_after", 0)
        return {"id": oid, "si": sid, "ct": int(now), "t_created": now, "currency": currency, "price": price,
                "creation_fee": 0.0, "fee_charged": 0.0, "spend0": 0.0, "accrue_from": now, "image": image,
                "mrl": s.get("mrl", 72), "spot": spot, "owner": owner, "ssh_key": ssh_key,
                "online_at": None if after == "never" else time.monotonic() + float(after),
                "forced_offline": False, "ended": False, "end_reason": None, "ended_at": None,
                "host": s.get("ssh", {}).get("host", "127.0.0.1"),
                "port": int(s.get("ssh", {}).get("port", 22)), "ports": {"22": "tcp"},
                "last_lowered": None}

    def spend(self, o):
        end = o["ended_at"] if o["ended"] else time.time()
        return o["spend0"] + o["price"] / 86400.0 * max(0.0, end - o["accrue_from"])

    def balance(self, name):
        w = self.wallets[name]
        charged = sum(o["fee_charged"] + self.spend(o) - o["spend0"]
                      for o in self.orders.values() if o["currency"] == name)
        return w["base"] - (charged - w["charged_base"])

    def set_balance(self, name, value):
        if name not in self.wallets:
            self.wallets[name] = {"base": 0.0, "charged_base": 0.0, "deposit": "dep-" + name,
                                  "withdrawal_fee": 1.0}
        w = self.wallets[name]
        charged = sum(o["fee_charged"] + self.spend(o) - o["spend0"]
                      for o in self.orders.values() if o["currency"] == name)
        w["base"] = float(value)
        w["charged_base"] = charged

    def is_online(self, o):
        return (not o["ended"] and not o["forced_offline"] and o["online_at"] is not None
                and time.monotonic() >= o["online_at"])

    def has_been_online(self, o):
        return o["online_at"] is not None and time.monotonic() >= o["online_at"]

    def end_order(self, o, reason):
        o["ended"] = True
        o["end_reason"] = reason
        o["ended_at"] = time.time()
        s = self.servers.get(o["si"])
        if s is None:
            return
        if s.get("authorized_keys"):
            self.write_keys(s)
        if s.get("on_end"):
            # The container goes away: never in the request handler (which
            # holds the lock), and never for longer than ON_END_TIMEOUT.
            t = threading.Thread(target=self.run_on_end, args=(o["id"], list(s["on_end"])),
                                 daemon=True)
            t.start()

    def write_keys(self, s):
        """The server's authorized_keys: the ssh_key of every active order on it."""
        path = s["authorized_keys"]
        now = time.monotonic()
        keys = [o["ssh_key"].strip() for o in self.active_orders_on(int(s["id"]))
                if o["ssh_key"].strip() and o.get("keys_at", 0) <= now]
        tmp = "%s.fake%d" % (path, os.getpid())
        try:
            with open(tmp, "w") as f:
                f.write("".join(k + "\n" for k in keys))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except OSError as e:
            sys.stderr.write("clore_fake: cannot write %s: %s\n" % (path, e))

    def run_on_end(self, oid, argv):
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=ON_END_TIMEOUT)
            rec = {"order": oid, "rc": r.returncode,
                   "stderr": r.stderr.decode("utf-8", "replace")[-500:]}
        except subprocess.TimeoutExpired:
            rec = {"order": oid, "rc": None, "stderr": "timed out after %gs" % ON_END_TIMEOUT}
        except OSError as e:
            rec = {"order": oid, "rc": None, "stderr": str(e)}
        with self.lock:
            self.on_end_runs.append(rec)

    def active_orders_on(self, sid):
        return [o for o in self.orders.values() if o["si"] == sid and not o["ended"]]

    def server_rented(self, s):
        return bool(s["rented"]) or any(not o["spot"] for o in self.active_orders_on(int(s["id"])))

    def highest_bid(self, s, currency):
        bids = [o["price"] for o in self.active_orders_on(int(s["id"])) if o["spot"]]
        bids += [o["bid"] for o in s["offers"] if o.get("active", True)]
        return max(bids) if bids else None

    def usd(self, amount, currency):
        return amount * self.rates.get(currency, 0.0)

    # ------------------------------------------------------------ replies

    def gpu_array(self, s):
        nested = s.get("gpu_array_nested")
        if nested is None:
            nested = self.nested
        names = [s["gpu"]] * int(s["gpus"])
        return [[n] for n in names] if nested else names

    def server_json(self, s):
        n = self.ints
        od = {c: num(float(v), n) for c, v in s["on_demand"].items()}
        sp = {c: num(float(v), n) for c, v in s["spot"].items()}
        usd = {}
        for cur, field in (("CLORE-Blockchain", "on_demand_clore"), ("USD-Blockchain", "on_demand_usd"),
                           ("bitcoin", "on_demand_btc")):
            if cur in s["on_demand"]:
                usd[field] = num(round(self.usd(float(s["on_demand"][cur]), cur), 6), n)
        if s["spot"]:
            usd["spot"] = num(round(min(self.usd(float(v), c) for c, v in s["spot"].items()), 6), n)
        out = {"id": int(s["id"]), "owner": s.get("owner", 77), "mrl": s["mrl"],
               "rented": self.server_rented(s), "reliability": num(float(s["reliability"]), n),
               "allowed_coins": list(s["allowed_coins"]),
               "rating": {"avg": num(float(s.get("rating_avg", 4.8)), n), "cnt": s.get("rating_cnt", 25)},
               "gpu_array": self.gpu_array(s), "cuda_version": s.get("cuda_version", "12.4"),
               "price": {"on_demand": od, "spot": sp, "usd": usd},
               "specs": {"cpu": s.get("cpu", "AMD Ryzen 9 5950X"), "cpus": s.get("cpus", "16/32"),
                         "ram": num(float(s.get("ram", 62.7)), n),
                         "gpu": "%dx %s" % (int(s["gpus"]), s["gpu"]),
                         "gpuram": num(float(s["gpuram"]), n), "disk": s.get("disk", "NVMe 1000GB"),
                         "net": {"cc": s.get("country", "DE"), "up": 500.1, "down": 900.3}}}
        for f in s["omit"]:
            parts = f.split(".")
            d = out
            for p in parts[:-1]:
                d = d.get(p, {})
            d.pop(parts[-1], None)
        return out

    def order_json(self, o):
        n = self.ints
        s = self.servers.get(o["si"])
        online = self.is_online(o)
        up = self.has_been_online(o) and not o["ended"]
        out = {"id": o["id"], "si": o["si"], "ct": o["ct"], "currency": o["currency"],
               "price": num(float(o["price"]), n), "creation_fee": num(round(o["creation_fee"], 8), n),
               "spend": num(round(self.spend(o), 8), n), "image": o["image"], "mrl": o["mrl"],
               "spot": o["spot"], "online": online, "expired": o["ended"],
               "pub_cluster": [o["host"]] if up else [],
               "tcp_ports": ["22:%d" % o["port"]] if up else []}
        if up and "8888" in o["ports"]:
            out["http_port"] = "8888"
        if s:
            out["specs"] = {"gpu": "%dx %s" % (int(s["gpus"]), s["gpu"]), "gpuram": num(float(s["gpuram"]), n)}
            out["gpu_array"] = self.gpu_array(s)
        return out

    def control_order(self, o):
        d = self.order_json(o)
        d.update({"owner": o["owner"], "ended": o["ended"], "end_reason": o["end_reason"],
                  "ssh_key": o["ssh_key"], "forced_offline": o["forced_offline"],
                  "env": o.get("env", {}), "command": o.get("command"),
                  "t_created": o["t_created"], "t_ended": o["ended_at"],
                  "fee_charged": o["fee_charged"],
                  "t_keys": o.get("t_keys", o["t_created"] if not o.get("keys_at") else None)})
        return d

    # ------------------------------------------------------------ endpoints

    def ep_marketplace(self, q, body):
        out = {"code": 0, "servers": [self.server_json(s) for s in self.servers.values()]}
        if self.legacy_my_servers:
            out["my_servers"] = []
        return out

    def ep_wallets(self, q, body):
        return {"code": 0, "wallets": [
            {"name": name, "balance": num(round(self.balance(name), 8), self.ints), "deposit": w["deposit"],
             "withdrawal_fee": w["withdrawal_fee"]} for name, w in self.wallets.items()]}

    def ep_create_order(self, q, body):
        if not isinstance(body, dict):
            return {"code": 2}
        sid = body.get("renting_server")
        typ = body.get("type")
        image = body.get("image")
        currency = body.get("currency", "CLORE-Blockchain")
        ports = body.get("ports", {"22": "tcp"})
        env = body.get("env", {})
        if not isinstance(sid, int) or isinstance(sid, bool) or typ not in ("on-demand", "spot"):
            return {"code": 2}
        if not isinstance(image, str) or not image or not isinstance(currency, str):
            return {"code": 2}
        if not isinstance(ports, dict) or any(v not in ("tcp", "http") for v in ports.values()):
            return {"code": 2}
        if not isinstance(env, dict) or any(not isinstance(v, str) for v in env.values()):
            return {"code": 2}
        ssh_key = body.get("ssh_key", "")
        if not isinstance(ssh_key, str):
            return {"code": 2}
        spot = typ == "spot"
        if spot and not is_number(body.get("spotprice")):
            return {"code": 2}
        s = self.servers.get(sid)
        if s is None:
            return {"code": 2}
        if s["offline"]:
            return {"code": 6, "error": "server-offline"}
        if currency not in s["allowed_coins"] or currency not in KNOWN_COINS:
            return {"code": 6, "error": "currency-not-allowed"}
        if self.server_rented(s):
            return {"code": 6, "error": "server-already-rented"}
        if s.get("taken_on_order"):
            s["rented"] = True
            return {"code": 1}
        if spot:
            price = float(body["spotprice"])
            floor = s["min_spot"].get(currency)
            if floor is not None and price < float(floor):
                return {"code": 6, "error": "too_low_price"}
            top = self.highest_bid(s, currency)
            if top is not None and price <= top:
                return {"code": 6, "error": "too_low_price"}
        else:
            if currency not in s["on_demand"]:
                return {"code": 6, "error": "currency-not-allowed"}
            price = float(s["on_demand"][currency])
        rate = self.rates.get(currency, 0.0)
        fee = self.fee_usd / rate if rate > 0 else 0.0
        if currency not in self.wallets or self.balance(currency) < fee + price * self.require_days:
            if self.balance_error == "code1":
                return {"code": 1}
            return {"code": 6, "error": "not_enough_balance"}
        if spot:
            # A higher bid takes the server from lower spot bidders.
            for o in self.active_orders_on(sid):
                if o["spot"]:
                    self.end_order(o, "outbid")
        oid = self.next_id
        self.next_id += 1
        o = self._new_order(oid, sid, spot, currency, price, image, ssh_key, owner="api")
        o["creation_fee"] = self.fee_usd if rate > 0 else 0.0  # USD, as my_orders shows it
        o["fee_charged"] = fee                                  # in the order's currency
        o["ports"] = dict(ports)
        o["env"] = dict(env)
        o["command"] = body.get("command")
        self.orders[oid] = o
        if s.get("authorized_keys"):
            late = float(s.get("keys_after") or 0)
            if late > 0 and o["online_at"] is not None:
                o["keys_at"] = o["online_at"] + late
                t = threading.Timer(o["keys_at"] - time.monotonic() + 0.01, self.keys_due, args=(s,))
                t.daemon = True
                t.start()
            self.write_keys(s)
        return {"code": 0}

    def keys_due(self, s):
        with self.lock:
            self.write_keys(s)
            now = time.monotonic()
            for o in self.active_orders_on(int(s["id"])):
                if o.get("keys_at", 0) <= now and o.get("t_keys") is None:
                    o["t_keys"] = time.time()

    def ep_my_orders(self, q, body):
        completed = q.get("return_completed", [""])[0].lower() == "true"
        return {"code": 0, "orders": [self.order_json(o) for o in self.orders.values()
                                      if completed or not o["ended"]]}

    def ep_cancel_order(self, q, body):
        if not isinstance(body, dict):
            return {"code": 2}
        oid = body.get("id")
        if not isinstance(oid, int) or isinstance(oid, bool):
            return {"code": 2}
        issue = body.get("issue")
        o = self.orders.get(oid)
        rec = {"id": oid, "issue": issue, "t": time.time(),
               "owner": o["owner"] if o else None, "was_active": bool(o and not o["ended"])}
        self.cancels.append(rec)
        if o and not o["ended"]:
            self.end_order(o, "cancelled")
            rec["reply"] = 0
            return {"code": 0}
        mode = self.cancel_ended_reply
        rep = {"code": 0} if mode == "ok" else ({"code": 6, "error": "order_not_found"}
                                              if mode == "code6" else {"code": 2})
        rec["reply"] = rep["code"]
        return rep

    def ep_spot_marketplace(self, q, body):
        try:
            sid = int(q.get("market", [""])[0])
        except ValueError:
            return {"code": 2}
        s = self.servers.get(sid)
        if s is None:
            return {"code": 0, "exists": False}
        n = self.ints
        offers = []
        for o in self.active_orders_on(sid):
            if o["spot"]:
                offers.append({"offer_id": o["id"], "bid": num(float(o["price"]), n), "active": True,
                               "my": True, "currency": o["currency"]})
        for o in s["offers"]:
            offers.append({"offer_id": o["offer_id"], "bid": num(float(o["bid"]), n),
                           "active": o.get("active", True), "my": False,
                           "currency": o.get("currency", "CLORE-Blockchain")})
        return {"code": 0, "exists": True, "market": {
            "offers": offers,
            "server": {"min_pricing": {c: num(float(v), n) for c, v in s["min_spot"].items()},
                       "mrl": s["mrl"], "visibility": "public", "online": not s["offline"]},
            "currency_rates_in_usd": {c: num(float(v), n) for c, v in self.rates.items()}}}

    def ep_set_spot_price(self, q, body):
        if not isinstance(body, dict):
            return {"code": 2}
        oid = body.get("order_id")
        desired = body.get("desired_price")
        if not isinstance(oid, int) or isinstance(oid, bool) or not is_number(desired):
            return {"code": 2}
        o = self.orders.get(oid)
        if o is None or o["ended"] or not o["spot"]:
            return {"code": 2}
        s = self.servers.get(o["si"], {"min_spot": {}})
        floor = s["min_spot"].get(o["currency"])
        desired = float(desired)
        if floor is not None and desired < float(floor):
            return {"code": 6, "error": "too_low_price"}
        if desired < o["price"]:
            window = 600.0 * self.rate_scale
            now = time.monotonic()
            if o["last_lowered"] is not None and now - o["last_lowered"] < window:
                return {"code": 6, "error": "can_lower_every_600_seconds",
                        "time_to_lowering": int(window - (now - o["last_lowered"])) + 1}
            step = o["price"] * self.max_lower_step
            if o["price"] - desired > step + 1e-9:
                return {"code": 6, "error": "exceeded_max_step", "max_step": num(round(step, 8), self.ints)}
            o["last_lowered"] = now
        # Charge the old price up to now, the new one from here on.
        o["spend0"] = self.spend(o)
        o["accrue_from"] = time.time()
        o["price"] = desired
        return {"code": 0}

    ENDPOINTS = {
        "marketplace": ("GET", ep_marketplace),
        "wallets": ("GET", ep_wallets),
        "create_order": ("POST", ep_create_order),
        "my_orders": ("GET", ep_my_orders),
        "cancel_order": ("POST", ep_cancel_order),
        "spot_marketplace": ("GET", ep_spot_marketplace),
        "set_spot_price": ("POST", ep_set_spot_price),
    }

    def api(self, method, name, q, body, key):
        """Returns (http status, reply dict or text)."""
        with self.lock:
            self.requests[name] = self.requests.get(name, 0) + 1
            if key is None or key != self.key:
                self.unauthorized += 1
                return 200, {"code": 3}
            now = time.monotonic()
            if name == "cancel_order" and self.cancel_429 > 0:
                self.cancel_429 -= 1
                self.cancels_refused += 1
                self.forced += 1
                if self.cancel_429_as == "code5":
                    return 200, {"code": 5}
                return 429, "Too Many Requests\n"
            if self.force_code5 > 0:
                self.force_code5 -= 1
                self.forced += 1
                return (429, "Too Many Requests\n") if self.http429 else (200, {"code": 5})
            last = self.last_req.get(key)
            lastc = self.last_create.get(key)
            violation = last is not None and now - last < 1.0 * self.rate_scale
            if name == "create_order" and lastc is not None and now - lastc < 5.0 * self.rate_scale:
                violation = True
            if violation:
                self.violations += 1
                return (429, "Too Many Requests\n") if self.http429 else (200, {"code": 5})
            self.last_req[key] = now
            if name == "create_order":
                self.last_create[key] = now
            ep = self.ENDPOINTS.get(name)
            if ep is None or ep[0] != method:
                return 200, {"code": 4}
            if body is ValueError:
                return 200, {"code": 2}
            out = ep[1](self, q, body)
            if name == "create_order":
                b = body if isinstance(body, dict) else {}
                self.create_attempts.append({
                    "server": b.get("renting_server"), "type": b.get("type"),
                    "currency": b.get("currency"), "spotprice": b.get("spotprice"),
                    "code": out.get("code"), "error": out.get("error"), "t": time.time()})
            return 200, out

    def control(self, method, name, body):
        with self.lock:
            if method == "GET" and name == "state":
                return {"orders": [self.control_order(o) for o in self.orders.values()],
                        "cancels": list(self.cancels), "cancels_refused": self.cancels_refused,
                        "cancel_429_left": self.cancel_429, "violations": self.violations,
                        "forced": self.forced, "requests": dict(self.requests),
                        "requests_total": sum(self.requests.values()),
                        "unauthorized": self.unauthorized,
                        "wallets": {n: self.balance(n) for n in self.wallets},
                        "ssh_keys": [o["ssh_key"] for o in self.orders.values() if o["owner"] == "api"],
                        "create_attempts": list(self.create_attempts),
                        "on_end": list(self.on_end_runs), "now": time.time()}
            if method != "POST" or not isinstance(body, dict):
                return None
            if name == "outbid":
                o = self.orders.get(body.get("order_id"))
                if o is None or o["ended"] or not o["spot"]:
                    return {"ok": False, "why": "no active spot order"}
                bid = float(body.get("bid", o["price"] * 1.1 + 1))
                s = self.servers.get(o["si"])
                if s is not None:
                    s["offers"].append({"offer_id": 900 + len(s["offers"]) + 50, "bid": bid,
                                        "currency": o["currency"], "active": True})
                self.end_order(o, "outbid")
                return {"ok": True}
            if name == "end":
                o = self.orders.get(body.get("order_id"))
                if o is None or o["ended"]:
                    return {"ok": False, "why": "no active order"}
                self.end_order(o, str(body.get("reason", "expired")))
                return {"ok": True}
            if name == "offline":
                o = self.orders.get(body.get("order_id"))
                if o is None:
                    return {"ok": False, "why": "no such order"}
                o["forced_offline"] = not body.get("online", False)
                return {"ok": True}
            if name == "set":
                for cur, val in body.get("balance", {}).items():
                    self.set_balance(cur, val)
                for k, attr in (("force_code5", "force_code5"), ("pad_bytes", "pad_bytes"),
                                ("stall_ms", "stall_ms")):
                    if k in body:
                        setattr(self, attr, int(body[k]))
                if "cancel_429" in body:
                    self.cancel_429 = int(body["cancel_429"])
                if "cancel_429_as" in body:
                    self.cancel_429_as = str(body["cancel_429_as"])
                if "http429" in body:
                    self.http429 = bool(body["http429"])
                if "cancel_ended_reply" in body:
                    self.cancel_ended_reply = body["cancel_ended_reply"]
                if "gpu_array_nested" in body:
                    self.nested = bool(body["gpu_array_nested"])
                if "balance_error" in body:
                    self.balance_error = body["balance_error"]
                if "rate_scale" in body:
                    self.rate_scale = float(body["rate_scale"])
                if "server" in body:
                    s = self.servers.get(body["server"].get("id"))
                    if s is None:
                        return {"ok": False, "why": "no such server"}
                    s.update({k: v for k, v in body["server"].items() if k != "id"})
                return {"ok": True}
            return None


class Handler(BaseHTTPRequestHandler):
    server_version = "clore-fake/1"

    def log_message(self, fmt, *args):
        pass  # the default would print headers-free lines, but to stderr: use --log instead

    def _reply(self, status, obj):
        fake = self.server.fake
        if isinstance(obj, dict):
            if fake.pad_bytes > 0:
                obj = dict(obj, padding="x" * fake.pad_bytes)
            data = json.dumps(obj).encode()
            ctype = "application/json"
        else:
            data = str(obj).encode()
            ctype = "text/plain"
        if fake.log:
            code = obj.get("code") if isinstance(obj, dict) else None
            # Method and path only: never the headers (the auth key).
            fake.log.write("%s %s -> %d %s\n" % (self.command, self.path, status, code))
            fake.log.flush()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self):
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return ValueError
        if n <= 0:
            return None
        if n > BODY_CAP:
            return ValueError
        raw = self.rfile.read(n)
        try:
            return json.loads(raw)
        except ValueError:
            return ValueError

    def _handle(self, method):
        fake = self.server.fake
        parts = urlsplit(self.path)
        body = self._body() if method == "POST" else None
        if parts.path.startswith("/_control/"):
            host = self.client_address[0]
            if not (host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")):
                return self._reply(403, {"error": "control is loopback only"})
            out = fake.control(method, parts.path[len("/_control/"):], body)
            if out is None:
                return self._reply(404, {"error": "unknown control"})
            # Control replies are never padded.
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if not parts.path.startswith("/v1/"):
            return self._reply(404, "not found\n")
        name = parts.path[len("/v1/"):].strip("/")
        status, out = fake.api(method, name, parse_qs(parts.query), body, self.headers.get("auth"))
        if fake.stall_ms > 0:
            time.sleep(fake.stall_ms / 1000.0)
        self._reply(status, out)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--key", default=None, help="the API key (else the scenario's \"key\")")
    ap.add_argument("--scenario", default=None)
    ap.add_argument("--rate-scale", type=float, default=None)
    ap.add_argument("--http429", action="store_true")
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    scenario = {}
    if args.scenario:
        with open(args.scenario) as f:
            scenario = json.load(f)
    key = args.key if args.key is not None else scenario.get("key")
    if not key:
        ap.error("an API key is needed (--key or the scenario's \"key\")")
    scale = args.rate_scale
    if scale is None:
        scale = float(os.environ.get("RENDERFS_CLORE_RATE_SCALE") or 1.0)
    log = open(args.log, "a") if args.log else None
    fake = Fake(key, scenario, scale, args.http429, log)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    httpd.fake = fake
    print("listening %d" % httpd.server_address[1], flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
