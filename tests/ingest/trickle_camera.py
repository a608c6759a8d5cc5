"""A hostile camera for tests: it accepts RTSP connections and then trickles bytes.

    python -m tests.ingest.trickle_camera MODE INTERVAL_S LIFETIME_S

Prints its port on stdout, then serves until LIFETIME_S (a bound, whatever happens):
- setup:  answers the first request with a status line, then one header byte every INTERVAL_S,
          never finishing the reply;
- stream: answers OPTIONS, DESCRIBE (an H.264 track), SETUP and PLAY properly, then sends one
          byte of an interleaved RTP packet (that never completes) every INTERVAL_S.
Each connection it serves is counted; the count of open ones goes to stderr when one closes.
"""

from __future__ import annotations

import asyncio
import sys

SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=trickle\r\nt=0 0\r\n"
       "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       "a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n")


async def serve(mode: str, interval: float, lifetime: float) -> None:
    open_now = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        open_now += 1
        try:
            if mode == "stream":
                for _ in range(4):  # OPTIONS, DESCRIBE, SETUP, PLAY
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.decode().split("\r\n")
                    cseq = next(x.split(":", 1)[1].strip() for x in lines
                                if x.lower().startswith("cseq"))
                    extra = ""
                    body = ""
                    if lines[0].startswith("DESCRIBE"):
                        body = SDP
                        extra = "Content-Type: application/sdp\r\n"
                    elif lines[0].startswith("SETUP"):
                        extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n" \
                                "Session: 1234;timeout=60\r\n"
                    elif lines[0].startswith("OPTIONS"):
                        extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
                    writer.write((f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}"
                                  f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
                    await writer.drain()
                trickle = b"$\x00\xff\xff" + b"\x80" * 65535  # a 64 KB packet, a byte at a time
            else:
                await reader.readuntil(b"\r\n\r\n")
                trickle = b"RTSP/1.0 200 OK\r\n" + b"X-Pad: " + b"a" * 60000
            for i in range(len(trickle)):
                writer.write(trickle[i:i + 1])
                await writer.drain()
                try:  # a byte, then wait — or notice the recorder hung up
                    if await asyncio.wait_for(reader.read(4096), interval) == b"":
                        break
                except TimeoutError:
                    pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            open_now -= 1
            writer.close()
            print(f"open {open_now}", file=sys.stderr, flush=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await asyncio.sleep(lifetime)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
