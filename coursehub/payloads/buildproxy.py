"""The one way out of a build's network namespace: an HTTP proxy on the builds' gateway address.

Run by courses/buildbox.py as the builder with the group whose sockets the build's nftables table
filters (spawner/netns.py build_ruleset): every connection it makes gets servers' egress policy, so
it needs no policy of its own. Started as `python3 -I -c SOURCE LISTEN_ADDRESS [UPSTREAM_HOST:PORT]`;
prints its port, then serves until killed. With an upstream (the admin's own HTTP(S)_PROXY) it relays
bytes there unchanged: the client already speaks that proxy's protocol. Standard library only.
"""

import asyncio
import os
import sys
from urllib.parse import urlsplit

TIMEOUT = 30
HOP_HEADERS = (b"connection:", b"proxy-connection:", b"keep-alive:", b"proxy-authorization:")


async def pipe(reader, writer):
    """Copy until either side closes."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def connect(host, port):
    return await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)


def origin_request(line, headers):
    """A plain-HTTP request rewritten for the origin server, its host and port (one per connection)."""
    method, target, version = line.decode("latin-1").split(" ", 2)
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(target)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [h for h in headers.split(b"\r\n") if h and not h.lower().startswith(HOP_HEADERS)]
    head = f"{method} {path} {version}\r\n".encode("latin-1") + b"\r\n".join([*kept, b"Connection: close"])
    return head + b"\r\n\r\n", url.hostname, url.port or 80


async def handle(reader, writer, upstream):
    try:
        if upstream:
            host, _, port = upstream.rpartition(":")
            up_reader, up_writer = await connect(host.strip("[]"), int(port))
        else:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            line, _, headers = head[:-4].partition(b"\r\n")
            if line.upper().startswith(b"CONNECT "):
                host, _, port = line.split()[1].decode("latin-1").rpartition(":")
                up_reader, up_writer = await connect(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                request, host, port = origin_request(line, headers)
                up_reader, up_writer = await connect(host, port)
                up_writer.write(request)
    # asyncio.TimeoutError: not yet TimeoutError on Python < 3.11 (sandbox.python may be older).
    except (  # noqa: UP041
        OSError,
        ValueError,
        asyncio.TimeoutError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
    ) as exc:
        reason = f"coursehub build proxy: {type(exc).__name__}: {exc}"
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n" + reason.encode() + b"\n")
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def main():
    listen = sys.argv[1]
    upstream = sys.argv[2] if len(sys.argv) > 2 else ""
    server = await asyncio.start_server(lambda r, w: handle(r, w, upstream), listen, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    parent = os.getppid()
    async with server:
        # Its build ends it; a build process that dies (a killed hub) leaves no proxy behind.
        while os.getppid() == parent:
            await asyncio.sleep(2)


if __name__ == "__main__":
    asyncio.run(main())
