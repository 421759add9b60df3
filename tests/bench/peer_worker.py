#!/usr/bin/env python3
"""peer_worker.py -- the worker a team would write by hand, for the benchmark's peer row (issue 15).

Python 3 with Debian's python3-confluent-kafka and the standard sqlite3 module: the ledger's rules, one SQLite database
per partition (WAL, synchronous=NORMAL, as esr's), the state and the partition's next offset in one transaction per
batch of --batch events, no savepoints, no log digest, no dead-letter topic (a refused event is counted and skipped).
It assigns every partition of the topic at the offset its database holds, consumes until every partition reached the
high watermark seen at start, and prints one JSON line: events, applied, refused, wall seconds, CPU seconds of the
whole process (user + system, from getrusage), and the CPU per event.
"""
import argparse
import json
import os
import resource
import sqlite3
import sys
import time

from confluent_kafka import Consumer, TopicPartition

INT53 = 2 ** 53
INT64_MAX = 2 ** 63 - 1


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS accounts(id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL,"
               " opened_at TEXT, updated_at TEXT, currency TEXT NOT NULL DEFAULT 'EUR') WITHOUT ROWID")
    db.execute("CREATE TABLE IF NOT EXISTS offsets(id INTEGER PRIMARY KEY CHECK (id = 0), next_offset INTEGER NOT NULL)")
    row = db.execute("SELECT next_offset FROM offsets").fetchone()
    return db, (row[0] if row else 0)


def amount_of(data):
    a = data.get("amount")
    if isinstance(a, bool) or not isinstance(a, int) or a < 1 or a > INT53:
        return None
    return a


def apply(db, key, value):
    """The ledger's rules; True when applied."""
    try:
        env = json.loads(value)
    except (ValueError, UnicodeDecodeError, TypeError):
        return False
    if not isinstance(env, dict) or not isinstance(env.get("type"), str) or not isinstance(env.get("data"), dict):
        return False
    t, data, when = env["type"], env["data"], env.get("time")
    version = env.get("version", 1)
    if when is not None and not isinstance(when, str):
        return False
    account = data.get("account")
    if not isinstance(account, str) or not account or key is None or key.decode("utf-8", "replace") != account:
        return False
    if t == "account.opened" and version == 1:
        owner = data.get("owner")
        if not isinstance(owner, str) or not owner:
            return False
        cur = db.execute("INSERT INTO accounts(id, owner, balance, opened_at, updated_at) VALUES (?, ?, 0, ?, ?)"
                         " ON CONFLICT(id) DO NOTHING", (account, owner, when, when))
        return cur.rowcount == 1
    if t == "account.deposited" and version in (1, 2):
        amount = amount_of(data)
        currency = data.get("currency", "EUR") if version == 1 else data.get("currency")
        if amount is None or not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
            return False
        cur = db.execute("UPDATE accounts SET balance = balance + ?, updated_at = ? WHERE id = ? AND currency = ?"
                         " AND balance <= ? - ?", (amount, when, account, currency, INT64_MAX, amount))
        return cur.rowcount == 1
    if t == "account.withdrawn" and version == 1:
        amount = amount_of(data)
        if amount is None:
            return False
        cur = db.execute("UPDATE accounts SET balance = balance - ?, updated_at = ? WHERE id = ? AND balance >= ?",
                         (amount, when, account, amount))
        return cur.rowcount == 1
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--batch", type=int, default=1000)
    o = ap.parse_args()
    os.makedirs(o.dir, exist_ok=True)
    c = Consumer({"bootstrap.servers": o.bootstrap, "group.id": "esr-bench-peer", "enable.auto.commit": False,
                  "auto.offset.reset": "error", "queued.min.messages": 1000000, "enable.partition.eof": False})
    meta = c.list_topics(o.topic, timeout=10)
    parts = sorted(meta.topics[o.topic].partitions)
    dbs, ends, nxt, assign = {}, {}, {}, []
    for p in parts:
        dbs[p], nxt[p] = open_db(os.path.join(o.dir, "%s-%d.db" % (o.topic, p)))
        ends[p] = c.get_watermark_offsets(TopicPartition(o.topic, p), timeout=10)[1]
        if nxt[p] < ends[p]:
            assign.append(TopicPartition(o.topic, p, nxt[p]))
    t0, events, applied = time.monotonic(), 0, 0
    pending = {p: 0 for p in parts}
    c.assign(assign)
    left = sum(1 for p in parts if nxt[p] < ends[p])

    def commit(p):
        dbs[p].execute("INSERT INTO offsets(id, next_offset) VALUES (0, ?) ON CONFLICT(id) DO UPDATE SET"
                       " next_offset = excluded.next_offset", (nxt[p],))
        dbs[p].execute("COMMIT")
        pending[p] = 0

    while left > 0:
        for m in c.consume(num_messages=1000, timeout=1.0):
            if m.error():
                print("peer: %s" % m.error(), file=sys.stderr)
                continue
            p = m.partition()
            if m.offset() < nxt[p]:
                continue
            db = dbs[p]
            if pending[p] == 0:
                db.execute("BEGIN")
            applied += apply(db, m.key(), m.value())
            nxt[p] = m.offset() + 1
            events += 1
            pending[p] += 1
            if pending[p] >= o.batch or nxt[p] >= ends[p]:
                commit(p)
                if nxt[p] >= ends[p]:
                    left -= 1
    for p in parts:
        if pending[p]:
            commit(p)
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime
    c.close()
    print(json.dumps({"events": events, "applied": applied, "refused": events - applied, "wall_s": round(wall, 3),
                      "cpu_s": round(cpu, 3), "cpu_us_per_event": round(cpu * 1e6 / max(events, 1), 2)}))


if __name__ == "__main__":
    main()
