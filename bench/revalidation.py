#!/usr/bin/env python3
"""What the caching policy costs the server: user-space instructions per request, under
callgrind as `instructions.py` counts them, for one cached document answered three ways:

- `200`: a plain GET, a cache hit;
- `304`: a browser's revalidation, `If-None-Match` with the document's ETag, which
  browsers send at every load under `max-age=0`;
- `preflight`: a browser's CORS preflight, `OPTIONS` with `Origin` and
  `Access-Control-Request-Method`.

Usage: revalidation.py --atelier PATH [--atelier PATH]... --database-url URL
                       [--path /products/1/styles] [--requests N]
Each build given is measured in turn, on the server CPU, driven by oha from the other.
"""

import argparse
import os
import urllib.request

import instructions
from atelier_bench.machine import WORK, add_cpu_options, choose_cpus, log


def answer_kinds(etag):
    return {
        "200": ("GET", ["Accept-Encoding: identity"]),
        "304": ("GET", ["Accept-Encoding: identity", f"If-None-Match: {etag}"]),
        "preflight": ("OPTIONS", ["Origin: http://shop.example",
                                  "Access-Control-Request-Method: GET"]),
    }


def count(atelier, kind, args, directory):
    process, out = instructions.start(
        [atelier, "serve", "--listen", f"127.0.0.1:{instructions.PORT}",
         "--database-url", args.database_url],
        f"revalidation-{kind}", directory, args.cpus.server)
    try:
        url = f"http://127.0.0.1:{instructions.PORT}{args.path}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            etag = reply.headers["ETag"]
        method, headers = answer_kinds(etag)[kind]
        oha = ["taskset", "-c", args.cpus.driver, "oha", "--no-tui", "-c", "32",
               "-m", method, url]
        for header in headers:
            oha += ["-H", header]
        instructions.subprocess.run(oha + ["-n", str(args.warmup)], check=True,
                                    capture_output=True)
        return instructions.counted(process, out, oha + ["-n", str(args.requests)],
                                    args.requests)
    finally:
        process.terminate()
        process.wait(timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atelier", action="append", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--path", default="/products/1/styles")
    parser.add_argument("--warmup", type=int, default=4000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--port", type=int, default=3110)
    add_cpu_options(parser)
    args = parser.parse_args()
    args.cpus = choose_cpus(args.server_cpu, args.driver_cpu)
    instructions.PORT = args.port
    directory = os.path.join(WORK, "instructions")
    os.makedirs(directory, exist_ok=True)
    for atelier in args.atelier:
        for kind in answer_kinds(""):
            per_request = count(atelier, kind, args, directory)
            log(f"{atelier}: {kind}: {per_request:,.0f} instructions per request")


if __name__ == "__main__":
    main()
