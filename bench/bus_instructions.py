"""Instructions the bus executes per intent (publish + claim + fulfil), counted by callgrind.

Throughput on a shared 2-core machine moves by 10-15 % from run to run; instruction counts do
not. This runs a real ``intent-fleet bus`` under ``valgrind --tool=callgrind`` twice, driven
one request at a time by a signed tenant client (so each group commit holds one request and the
count does not depend on timing): once with SMALL intents, once with LARGE. The difference,
divided by LARGE - SMALL, is the cost of one intent's life (publish, claim, fulfil) with the
start-up taken out. Run it from two checkouts (or with PYTHONPATH pointing at another ``src``)
for a before/after ratio.

    .venv/bin/python bench/bus_instructions.py            # about 1 minute
    .venv/bin/python bench/bus_instructions.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bus import SignedClient  # bench/bus.py: the same thin signed client
from intent_fleet.protocol.signing import canonical_path

SECRET = "adm_" + "0" * 32


async def drive(url: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        admin = SignedClient(session, url, SECRET)
        status, body = await admin.call(
            "POST", "/admin/generate_key", {"owner": "bench"}, admin_token=SECRET
        )
        assert status == 201, (status, body)
        client = SignedClient(session, url, orjson.loads(body)["api_key"])
        claim = canonical_path("/claim", {"goal": "g"})
        for n in range(count):
            doc = {"goal": "g", "payload": {"n": n, "pad": "x" * 64}}
            status, body = await client.call("POST", "/intent", doc, timeout=300)
            assert status == 201, (status, body)
            status, body = await client.call("POST", claim, timeout=300)
            assert status == 200, (status, body)
            intent = orjson.loads(body)
            token = {"claim_token": intent["claim_token"]}
            status, body = await client.call("POST", f"/fulfill/{intent['id']}", token, timeout=300)
            assert status == 200, (status, body)


def instructions(count: int, tmp: Path) -> int:
    """Total instructions of a bus that served ``count`` intents and stopped."""
    out = tmp / f"callgrind-{count}.out"
    env = {**os.environ, "INTENT_BUS_ADMIN_SECRET": SECRET, "PYTHONHASHSEED": "0"}
    bus = [sys.executable, "-m", "intent_fleet.cli.main", "bus", "--db", str(tmp / f"{count}.db")]
    bus += ["--port", "0", "--require-signatures", "--rate-limit", "0", "--log-level", "warning"]
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *bus],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if match := re.search(r"listening on (https?://\S+)", line):
                url = match.group(1)
                break
        assert url is not None, "the bus did not start under valgrind"
        asyncio.run(drive(url, count))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise AssertionError(f"no instruction total in {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--large", type=int, default=350)
    parser.add_argument("--quick", action="store_true", help="10 and 40 intents")
    args = parser.parse_args()
    if args.quick:
        args.small, args.large = 10, 40
    if shutil.which("valgrind") is None:
        parser.error("needs valgrind (Debian package valgrind)")
    with tempfile.TemporaryDirectory(prefix="intent-bench-instr-") as tmp:
        small = instructions(args.small, Path(tmp))
        large = instructions(args.large, Path(tmp))
    per_intent = (large - small) / (args.large - args.small)
    print(
        f"bus instructions: {per_intent:,.0f} per intent (publish + claim + fulfil, tenant key, "
        f"signed), {per_intent / 3:,.0f} per request; start-up and {args.small} intents "
        f"{small:,}, {args.large} intents {large:,}"
    )
    print(json.dumps({"bench": "bus_instructions", "per_intent": per_intent}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
