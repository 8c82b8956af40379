"""The baseline of `scalesense bench ingest`: the subscriber a user might write.

A paho-mqtt client subscribes to `keg/readings/+` with QoS 1 and inserts every reading into a
SQLite table (WAL, synchronous=FULL: the same durability as the Scale Sense store), either with
one commit per message (`--batch 1`) or committing every N messages (`--batch 100`, plus a flush
of a partial batch after `--flush-ms` without a full one, as anyone batching has to add so the
last readings are not left uncommitted).

It talks to the bench over stdout: `READY` once subscribed, then `C <count>` with the number
of committed readings (at most every 20 ms and whenever the count changes after a pause). With
`--latency-out FILE` it writes `device,boot,seq,commit_epoch_us` for every committed reading
when it is stopped (its stdin closes, or SIGTERM), so the bench can compute publish-to-commit latency.
"""

import argparse
import json
import signal
import sqlite3
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--db", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--flush-ms", type=int, default=1000)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--latency-out")
    args = parser.parse_args()

    db = sqlite3.connect(args.db, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS readings ("
        " device TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,"
        " ts INTEGER, weight_lbs REAL, level_pct REAL, battery_v REAL, battery_pct REAL,"
        " rssi INTEGER, stable INTEGER, received_at INTEGER NOT NULL)"
    )

    lock = threading.Lock()
    state = {"pending": [], "oldest": 0.0, "committed": 0}
    latencies = [] if args.latency_out else None

    def commit(rows):
        db.execute("BEGIN")
        db.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
        state["committed"] += len(rows)
        if latencies is not None:
            now_us = time.time_ns() // 1000
            latencies.extend((r[0], r[1], r[2], now_us) for r in rows)

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe("keg/readings/+", qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        print("READY", flush=True)

    def on_message(client, userdata, msg):
        try:
            r = json.loads(msg.payload)
            row = (
                msg.topic.rsplit("/", 1)[1], r["boot"], r["seq"], r.get("ts"),
                r["weight_lbs"], r.get("level_pct"), r.get("battery_v"),
                r.get("battery_pct"), r.get("rssi"), int(bool(r.get("stable"))),
                int(time.time() * 1000),
            )
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            if not state["pending"]:
                state["oldest"] = time.monotonic()
            state["pending"].append(row)
            if len(state["pending"]) >= args.batch:
                rows, state["pending"] = state["pending"], []
                commit(rows)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=True
    )
    client.max_inflight_messages_set(100)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    def watch_stdin():
        for _ in sys.stdin:
            pass
        stopping.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    last_reported = -1
    while not stopping.is_set():
        time.sleep(0.02)
        with lock:
            pending = state["pending"]
            if pending and time.monotonic() - state["oldest"] >= args.flush_ms / 1000:
                state["pending"] = []
                commit(pending)
            committed = state["committed"]
        if committed != last_reported:
            print(f"C {committed}", flush=True)
            last_reported = committed
    client.disconnect()
    client.loop_stop()
    with lock:
        if state["pending"]:
            commit(state["pending"])
    if latencies is not None:
        with open(args.latency_out, "w") as out:
            for device, boot, seq, commit_us in latencies:
                out.write(f"{device},{boot},{seq},{commit_us}\n")
    print("DONE", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
