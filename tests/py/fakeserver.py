"""A scripted fake OpenAI endpoint for testing load generators (rotor-bench).

Serves POST /v1/chat/completions and /v1/completions on 127.0.0.1 (an
ephemeral port), streaming (SSE chunks in OpenAI's format, a final usage
chunk when the body asks for stream_options.include_usage, then
`data: [DONE]`) or not, with exact scripted timing: the first token is sent
ttft s after the request arrived, token k (0-based) at ttft + k * itl, all
on absolute deadlines so delays do not drift. Each response has `tokens`
tokens (default: the body's max_tokens / max_completion_tokens). Keep-alive
(HTTP/1.1, parsed by h11). Also GET /v1/models and GET /health.

    with FakeServer(ttft=0.05, itl=0.01) as srv:      # runs in a thread
        ... point a client at srv.url ...
    srv.records   # one Record per request: arrival time, path, body, status

A script decides each reply: script(index, path, body) -> Reply or None
(None: the server's defaults), index = arrival order from 0. Helpers:
errors_every(k) (every k-th request answers 500), table([...]) (request i
gets replies[i % len]). gate=N holds every reply until N requests have
arrived (proves N concurrent requests; released after gate_timeout s
anyway), and max_inflight records the most requests open at once.

One asyncio loop holds thousands of concurrent streams; start() raises the
soft RLIMIT_NOFILE to the hard limit (children started later inherit it).

Standalone: python tests/py/fakeserver.py --ttft-ms 50 --itl-ms 10
[--tokens N] [--error-every K] [--port P] [--records FILE.jsonl]; prints
"listening on http://127.0.0.1:PORT" and serves until SIGINT/SIGTERM.
"""
import argparse
import asyncio
import dataclasses
import json
import resource
import signal
import sys
import threading
import time

import h11

DEFAULT_TOKENS = 16


@dataclasses.dataclass
class Reply:
    """How to answer one request. None fields take the server's defaults."""
    ttft: float = None    # s from arrival (or from the gate opening) to the first token
    itl: float = None     # s between tokens
    tokens: int = None    # output tokens; None: the body's max_tokens
    status: int = 200     # != 200: an error answer (JSON body) right away, after `delay`
    delay: float = 0.0    # s before an error answer


@dataclasses.dataclass
class Record:
    index: int            # arrival order, from 0
    t_arrival: float      # time.monotonic() when the whole request had arrived
    path: str
    body: object          # the parsed JSON body (None if not JSON)
    status: int = 0       # the status answered
    tokens: int = 0       # tokens sent
    t_done: float = 0.0   # time.monotonic() when the answer was complete
    stream: bool = False
    headers: dict = dataclasses.field(default_factory=dict)  # lower-case names


def errors_every(k, status=500, base=None):
    """A script: requests k-1, 2k-1, ... (every k-th) answer `status`."""
    def script(index, path, body):
        if (index + 1) % k == 0:
            return Reply(status=status)
        return base(index, path, body) if base else None
    return script


def table(replies):
    """A script: request i gets replies[i % len(replies)]."""
    replies = list(replies)

    def script(index, path, body):
        return replies[index % len(replies)]
    return script


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _json_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _prompt_tokens(path, body):
    """Approximate prompt length: token ids as given, else words."""
    if not isinstance(body, dict):
        return 0
    if path.endswith("/completions") and "messages" not in body:
        p = body.get("prompt")
        if isinstance(p, list):
            return len(p[0]) if p and isinstance(p[0], list) else len(p)
        return len(str(p or "").split())
    n = 0
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            n += len(c.split())
        elif isinstance(c, list):
            n += sum(len(str(x.get("text", "")).split()) for x in c if isinstance(x, dict))
    return n


class FakeServer:
    def __init__(self, ttft=0.05, itl=0.01, tokens=None, script=None, host="127.0.0.1", port=0,
                 gate=0, gate_timeout=60.0, model="fake-model"):
        self.ttft, self.itl, self.tokens = ttft, itl, tokens
        self.script = script
        self.host, self.port = host, port
        self.gate, self.gate_timeout = gate, gate_timeout
        self.model = model
        self.records = []        # Record per request, in arrival order
        self.inflight = 0
        self.max_inflight = 0
        self.connections = 0     # TCP connections accepted
        self.errors = []         # exceptions raised while serving (should stay empty)
        self._loop = None
        self._thread = None
        self._server = None
        self._gate_event = None
        self._ready = threading.Event()
        self._start_error = None

    # -- lifecycle -------------------------------------------------------
    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self, timeout=10.0):
        """Serve in a background thread; return self once listening."""
        raise_nofile()
        self._thread = threading.Thread(target=self._run, name="fakeserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fake server did not start")
        if self._start_error:
            raise self._start_error
        return self

    def stop(self, timeout=10.0):
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.serve())
        except BaseException as e:  # noqa: BLE001 -- reported to start()
            self._start_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def serve(self):
        """Start listening in the running loop (sets self.port)."""
        self._loop = asyncio.get_running_loop()
        self._gate_event = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=4096,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- scripting -------------------------------------------------------
    def arrivals(self, path=None):
        """Arrival times (monotonic s) of the requests, optionally on one path."""
        return [r.t_arrival for r in self.records if path is None or r.path == path]

    def _reply_for(self, index, path, body):
        r = self.script(index, path, body) if self.script else None
        r = dataclasses.replace(r) if r is not None else Reply()
        if r.ttft is None:
            r.ttft = self.ttft
        if r.itl is None:
            r.itl = self.itl
        if r.tokens is None:
            r.tokens = self.tokens
        if r.tokens is None:
            mt = None
            if isinstance(body, dict):
                mt = body.get("max_completion_tokens") or body.get("max_tokens")
            r.tokens = int(mt) if mt else DEFAULT_TOKENS
        return r

    # -- HTTP ------------------------------------------------------------
    async def _handle(self, reader, writer):
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                req, body = None, bytearray()
                while True:
                    ev = conn.next_event()
                    if ev is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                        continue
                    if isinstance(ev, h11.Request):
                        req = ev
                    elif isinstance(ev, h11.Data):
                        body += ev.data
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                    else:  # ConnectionClosed or PAUSED
                        return
                await self._respond(conn, writer, req, bytes(body))
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError:
            try:
                await self._send_simple(conn, writer, 400, {"error": {"message": "bad request"}})
            except Exception:  # noqa: BLE001 -- peer gone
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return  # stop(): end quietly (a cancelled handler task is reported by asyncio)
        except Exception as e:  # noqa: BLE001 -- recorded for the test to see
            self.errors.append(e)
        finally:
            writer.close()

    async def _write(self, conn, writer, event):
        data = conn.send(event)
        if data:
            writer.write(data)
            await writer.drain()

    async def _send_simple(self, conn, writer, status, obj):
        data = _json_bytes(obj)
        await self._write(conn, writer, h11.Response(status_code=status, headers=[
            ("content-type", "application/json"), ("content-length", str(len(data)))]))
        await self._write(conn, writer, h11.Data(data=data))
        await self._write(conn, writer, h11.EndOfMessage())

    async def _respond(self, conn, writer, req, raw):
        path = req.target.decode("latin-1").split("?", 1)[0]
        method = req.method.decode()
        if method == "GET" and path == "/health":
            return await self._send_simple(conn, writer, 200, {"status": "ok"})
        if method == "GET" and path == "/v1/models":
            return await self._send_simple(conn, writer, 200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "fakeserver"}]})
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            return await self._send_simple(conn, writer, 404, {"error": {"message": f"no route {method} {path}"}})
        t0 = time.monotonic()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Record(index=len(self.records), t_arrival=t0, path=path, body=body,
                     headers={k.decode().lower(): v.decode("latin-1") for k, v in req.headers})
        self.records.append(rec)
        if not isinstance(body, dict):
            rec.status = 400
            rec.t_done = time.monotonic()
            return await self._send_simple(conn, writer, 400, {"error": {"message": "body is not a JSON object"}})
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            reply = self._reply_for(rec.index, path, body)
            if self.gate:
                if len(self.records) >= self.gate:
                    self._gate_event.set()
                try:
                    await asyncio.wait_for(self._gate_event.wait(), self.gate_timeout)
                except asyncio.TimeoutError:
                    pass
                t0 = max(t0, time.monotonic())
            rec.stream = bool(body.get("stream"))
            if reply.status != 200:
                if reply.delay > 0:
                    await asyncio.sleep(reply.delay)
                rec.status = reply.status
                await self._send_simple(conn, writer, reply.status, {"error": {
                    "message": "scripted failure", "type": "server_error", "code": reply.status}})
            elif rec.stream:
                rec.status = 200
                await self._stream(conn, writer, rec, body, reply, t0)
            else:
                rec.status = 200
                await self._whole(conn, writer, rec, body, reply, t0)
            rec.t_done = time.monotonic()
        finally:
            self.inflight -= 1

    async def _until(self, t):
        dt = t - time.monotonic()
        if dt > 0:
            await asyncio.sleep(dt)

    def _usage(self, path, body, n):
        p = _prompt_tokens(path, body)
        return {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}

    async def _stream(self, conn, writer, rec, body, reply, t0):
        chat = rec.path == "/v1/chat/completions"
        rid = f"fake-{rec.index}"
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        await self._write(conn, writer, h11.Response(status_code=200, headers=[
            ("content-type", "text/event-stream"), ("cache-control", "no-cache")]))
        n = reply.tokens
        for k in range(n):
            await self._until(t0 + reply.ttft + k * reply.itl)
            fin = "length" if k == n - 1 else None
            text = f" tok{k}"
            if chat:
                delta = {"role": "assistant", "content": text} if k == 0 else {"content": text}
                choice = {"index": 0, "delta": delta, "finish_reason": fin}
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": fin}
            chunk = {"id": rid, "object": obj, "created": created, "model": body.get("model", self.model),
                     "choices": [choice]}
            out = b"data: " + _json_bytes(chunk) + b"\n\n"
            if k == n - 1:
                so = body.get("stream_options")
                if isinstance(so, dict) and so.get("include_usage"):
                    u = {"id": rid, "object": obj, "created": created, "model": body.get("model", self.model),
                         "choices": [], "usage": self._usage(rec.path, body, n)}
                    out += b"data: " + _json_bytes(u) + b"\n\n"
                out += b"data: [DONE]\n\n"
            await self._write(conn, writer, h11.Data(data=out))
            rec.tokens = k + 1
        if n == 0:
            await self._write(conn, writer, h11.Data(data=b"data: [DONE]\n\n"))
        await self._write(conn, writer, h11.EndOfMessage())

    async def _whole(self, conn, writer, rec, body, reply, t0):
        n = reply.tokens
        await self._until(t0 + reply.ttft + max(n - 1, 0) * reply.itl)
        text = "".join(f" tok{k}" for k in range(n))
        if rec.path == "/v1/chat/completions":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
            obj = "text_completion"
        rec.tokens = n
        await self._send_simple(conn, writer, 200, {
            "id": f"fake-{rec.index}", "object": obj, "created": int(time.time()),
            "model": body.get("model", self.model), "choices": [choice], "usage": self._usage(rec.path, body, n)})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=None, help="output tokens (default: the body's max_tokens)")
    ap.add_argument("--error-every", type=int, default=0, help="every K-th request answers 500")
    ap.add_argument("--records", help="write one JSON line per request here on exit")
    a = ap.parse_args(argv)
    script = errors_every(a.error_every) if a.error_every > 0 else None
    srv = FakeServer(ttft=a.ttft_ms / 1e3, itl=a.itl_ms / 1e3, tokens=a.tokens, script=script,
                     host=a.host, port=a.port)
    raise_nofile()

    async def amain():
        await srv.serve()
        print(f"listening on {srv.url}", flush=True)
        stop = asyncio.Event()
        for s in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(s, stop.set)
        await stop.wait()
        srv._server.close()

    asyncio.run(amain())
    if a.records:
        with open(a.records, "w") as f:
            for r in srv.records:
                f.write(json.dumps(dataclasses.asdict(r)) + "\n")
    print(f"served {len(srv.records)} requests, at most {srv.max_inflight} at once", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
