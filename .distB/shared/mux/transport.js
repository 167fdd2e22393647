import { MuxSession } from './session.js';
const noop = () => { };
/**
 * Mask generator that leaves the 4-byte masking key all zero. ws sees a zero key and
 * skips the XOR pass over the payload (and the copy it needs to leave our buffer
 * intact); the relay's ws skips unmasking too. Measured with `npm run bench -- mux`
 * (1 GiB client → relay, 2-core VM): without the optional native `bufferutil` (it has
 * no prebuild for linux-arm64, for one) random keys cost ~4.2 s of CPU per GiB on
 * *each* side and cap uploads near 200 MB/s, against ~1.1 s/GiB and 600-700 MB/s
 * over TLS with a zero key. With `bufferutil` the two are within noise over TLS (ws
 * merges header and masked payload into one buffer, while with a zero key TLS
 * concatenates the two: one copy either way).
 *
 * Why this is safe for us: RFC 6455 masks client frames so that a hostile script in a
 * *browser* cannot make the byte stream look like HTTP to a transparent proxy on the
 * path (cache poisoning, RFC 6455 §10.3). Our client is not a browser and runs no
 * untrusted script, and over TLS no intermediary can read the bytes at all. The MASK
 * bit is still set, so relays (and any RFC-compliant server) accept the frames. We
 * only use it over wss://; over plain ws:// we keep random keys, since payload bytes
 * (origin responses) may be chosen by someone else and a proxy would see them.
 */
function zeroMask(mask) {
    mask.fill(0);
}
/**
 * ws client options for the tunnel client's connection to the relay at `url`: no
 * compression (frames are mostly already-compressed HTTP bodies, and deflate costs CPU
 * and memory per connection), `maxPayload` capped at the largest frame the session
 * accepts, and for a `wss:` URL a zero masking key (see `zeroMask`); `ws:` keeps ws's
 * random keys. Callers add `ca`, `servername`, `agent`, etc.
 */
export function tunnelClientWsOptions(url, options = {}) {
    const tls = new URL(url).protocol === 'wss:';
    return {
        perMessageDeflate: false,
        maxPayload: MuxSession.maxMessageBytes(options),
        ...(tls ? { generateMask: zeroMask } : {}),
    };
}
/** ws server options for the relay's side: no compression, `maxPayload` capped. */
export function tunnelServerWsOptions(options = {}) {
    return { perMessageDeflate: false, maxPayload: MuxSession.maxMessageBytes(options) };
}
/** Frames up to this size are gathered into one message per turn (see wsTransport). */
const BATCH_FRAME_MAX_BYTES = 4 * 1024;
/**
 * Largest gathered message. Far below any peer's `maxPayload` (12 + max(maxFrameBytes,
 * maxMetadataBytes), 64 KiB by default), so a batch is never too large for the peer.
 */
const BATCH_MAX_BYTES = 16 * 1024;
/** Adapts a connected `ws` WebSocket (binaryType nodebuffer). */
export function wsTransport(ws) {
    ws.binaryType = 'nodebuffer';
    let closed = false;
    // Frames sent in one turn of the event loop leave in one write: a small request is
    // OPEN + FIN one way and REPLY + DATA + FIN the other, and over TLS each separate
    // write would be its own record and syscall. The socket is corked at the first send
    // and uncorked after this loop iteration's I/O callbacks (setImmediate).
    //
    // Small frames of the same turn also share one WebSocket message (PROTOCOL.md §1):
    // each message costs a header, a socket write and a parse on the other side, and
    // under load a turn sends dozens of control frames. Large frames go alone, after
    // the small ones queued before them, so the order on the wire is the order sent.
    const socket = ws._socket;
    let turnScheduled = false;
    let batch = [];
    let batchBytes = 0;
    let batchCallbacks = [];
    const sendMessage = (data, callbacks) => {
        if (callbacks.length === 0)
            ws.send(data, { binary: true });
        else if (callbacks.length === 1)
            ws.send(data, { binary: true }, callbacks[0]);
        else
            ws.send(data, { binary: true }, (err) => {
                for (const cb of callbacks)
                    cb(err);
            });
    };
    const flushBatch = () => {
        if (batch.length === 0)
            return;
        const frames = batch;
        const callbacks = batchCallbacks;
        const bytes = batchBytes;
        batch = [];
        batchCallbacks = [];
        batchBytes = 0;
        if (ws.readyState !== ws.OPEN) {
            const err = new Error('WebSocket is not open');
            for (const cb of callbacks)
                cb(err);
            return;
        }
        sendMessage(frames.length === 1 ? frames[0] : Buffer.concat(frames, bytes), callbacks);
    };
    const endTurn = () => {
        turnScheduled = false;
        flushBatch();
        socket?.uncork();
    };
    const transport = {
        onFrame: noop,
        onClose: noop,
        // ws either writes our buffer to the socket as is (zero mask, unmasked) or copies it
        // to mask it, and calls back once the socket is done with it. Only frames above
        // BATCH_FRAME_MAX_BYTES are sent as they are; smaller ones are copied into a batch.
        framesCopiedOnSend: true,
        send(frame, cb) {
            if (ws.readyState !== ws.OPEN) {
                cb?.(new Error('WebSocket is not open'));
                return;
            }
            if (!turnScheduled) {
                turnScheduled = true;
                socket?.cork();
                setImmediate(endTurn);
            }
            if (frame.length <= BATCH_FRAME_MAX_BYTES) {
                if (batchBytes + frame.length > BATCH_MAX_BYTES) {
                    flushBatch();
                    socket?.uncork();
                    socket?.cork();
                }
                batch.push(frame);
                batchBytes += frame.length;
                // The session passes the same callback for most frames: once per message is enough.
                if (cb !== undefined && batchCallbacks.at(-1) !== cb)
                    batchCallbacks.push(cb);
                return;
            }
            flushBatch();
            sendMessage(frame, cb === undefined ? [] : [cb]);
        },
        get bufferedAmount() {
            return ws.bufferedAmount + batchBytes;
        },
        close(code = 1000, reason = '') {
            flushBatch();
            if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING)
                ws.close(code, reason);
        },
        terminate() {
            const callbacks = batchCallbacks;
            batch = [];
            batchCallbacks = [];
            batchBytes = 0;
            ws.terminate();
            const err = new Error('WebSocket terminated');
            for (const cb of callbacks)
                cb(err);
        },
    };
    ws.on('message', (data, isBinary) => {
        if (closed)
            return;
        if (!isBinary) {
            transport.onFrame(Buffer.alloc(0)); // a text message is a malformed frame
            return;
        }
        transport.onFrame(data);
    });
    let lastError;
    ws.on('error', (err) => {
        lastError = err;
    });
    ws.on('close', (code, reason) => {
        if (closed)
            return;
        closed = true;
        const err = lastError ??
            (code === 1000 ? undefined : new Error(`WebSocket closed (${code} ${reason.toString()})`));
        transport.onClose(err);
    });
    return transport;
}
/** One end of an in-memory pair; see `memoryTransportPair`. */
class MemoryTransport {
    peer;
    closed = false;
    buffered = 0;
    onFrame = noop;
    onClose = noop;
    send(frame, cb) {
        if (this.closed) {
            cb?.(new Error('transport closed'));
            return;
        }
        this.buffered += frame.length;
        setImmediate(() => {
            this.buffered -= frame.length;
            const peer = this.peer;
            if (peer !== undefined && !peer.closed)
                peer.onFrame(frame);
            cb?.();
        });
    }
    get bufferedAmount() {
        return this.buffered;
    }
    close() {
        // Let queued frames arrive first, as a WebSocket close does.
        setImmediate(() => this.shut(undefined));
    }
    terminate() {
        this.shut(new Error('terminated'));
    }
    shut(err) {
        for (const side of [this, this.peer]) {
            if (side === undefined || side.closed)
                continue;
            side.closed = true;
            side.onClose(side === this ? undefined : err);
        }
    }
}
/**
 * Two transports wired to each other in memory. Delivery is asynchronous
 * (setImmediate) so re-entrancy matches a real socket; `bufferedAmount` is the bytes
 * sent but not yet delivered.
 */
export function memoryTransportPair() {
    const a = new MemoryTransport();
    const b = new MemoryTransport();
    a.peer = b;
    b.peer = a;
    return [a, b];
}
//# sourceMappingURL=transport.js.map