/** Bytes kept of each body by default: enough for any webhook payload. */
export const CAPTURE_BODY_LIMIT_BYTES = 64 * 1024;
/** The first `limit` bytes of a body, and how many bytes the whole body had. */
export class BodyPreview {
    limit;
    /** All bytes seen, kept or not. */
    totalBytes = 0;
    /** True once `release()` freed the kept bytes (memory budget). */
    released = false;
    chunks = [];
    keptBytes = 0;
    joined;
    constructor(limit = CAPTURE_BODY_LIMIT_BYTES) {
        this.limit = limit;
    }
    /** Records a chunk passing by: copies what still fits (the caller may reuse `chunk`). */
    add(chunk) {
        this.totalBytes += chunk.length;
        if (this.released || this.keptBytes >= this.limit || chunk.length === 0)
            return;
        const part = chunk.subarray(0, this.limit - this.keptBytes);
        this.chunks.push(Buffer.from(part));
        this.keptBytes += part.length;
        this.joined = undefined;
    }
    /** Bytes kept (at most `limit`). */
    get capturedBytes() {
        return this.keptBytes;
    }
    /** True when the body was longer than what was kept (or the copy was released). */
    get truncated() {
        return this.totalBytes > this.keptBytes;
    }
    /** The kept bytes as one buffer. */
    bytes() {
        if (this.joined === undefined) {
            this.joined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
            this.chunks = this.joined.length > 0 ? [this.joined] : [];
        }
        return this.joined;
    }
    /** Frees the kept bytes (the counts stay). */
    release() {
        this.released = true;
        this.chunks = [];
        this.joined = undefined;
        this.keptBytes = 0;
    }
}
/**
 * Counts WebSocket messages in one direction by reading only frame headers (RFC 6455
 * §5.2) and skipping payloads: a message ends with a data or continuation frame that
 * has FIN set; control frames (ping, pong, close) are not messages. Headers split
 * across chunks are handled. If the bytes stop looking like WebSocket frames (a
 * non-WebSocket upgrade, reserved opcodes), counting stops and `valid` turns false.
 */
export class WebSocketFrameCounter {
    messages = 0;
    bytes = 0;
    valid = true;
    header = Buffer.alloc(14);
    headerBytes = 0;
    headerNeed = 2;
    skip = 0;
    push(chunk) {
        this.bytes += chunk.length;
        let i = 0;
        while (this.valid && i < chunk.length) {
            if (this.skip > 0) {
                const n = Math.min(this.skip, chunk.length - i);
                this.skip -= n;
                i += n;
                continue;
            }
            this.header[this.headerBytes++] = chunk[i++];
            if (this.headerBytes === 2) {
                const len7 = this.header[1] & 0x7f;
                const masked = (this.header[1] & 0x80) !== 0;
                this.headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
            }
            if (this.headerBytes >= 2 && this.headerBytes === this.headerNeed)
                this.endHeader();
        }
    }
    endHeader() {
        const b0 = this.header[0];
        const len7 = this.header[1] & 0x7f;
        const opcode = b0 & 0x0f;
        let length;
        if (len7 === 126)
            length = this.header.readUInt16BE(2);
        else if (len7 === 127) {
            const big = this.header.readBigUInt64BE(2);
            if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
                this.valid = false;
                return;
            }
            length = Number(big);
        }
        else
            length = len7;
        const fin = (b0 & 0x80) !== 0;
        // Reserved opcodes, RSV2/RSV3 (RSV1 is permessage-deflate), or a fragmented or
        // oversized control frame: not a WebSocket stream.
        if ((opcode > 2 && opcode < 8) ||
            opcode > 10 ||
            (b0 & 0x30) !== 0 ||
            (opcode >= 8 && (!fin || length > 125))) {
            this.valid = false;
            return;
        }
        if (opcode < 8 && fin)
            this.messages++;
        this.skip = length;
        this.headerBytes = 0;
        this.headerNeed = 2;
    }
}
/** One exchange as the proxy saw it; filled in while it runs. */
export class ExchangeCapture {
    request;
    requestBody;
    responseBody;
    /** The origin's response head, once it arrived. */
    response;
    /** For an upgrade that the origin accepted: traffic each way (WebSocket messages counted). */
    upgraded;
    /** Epoch ms when the exchange ended; undefined while it runs. */
    finishedAt;
    constructor(request, bodyLimitBytes = CAPTURE_BODY_LIMIT_BYTES) {
        this.request = request;
        this.requestBody = new BodyPreview(bodyLimitBytes);
        this.responseBody = new BodyPreview(bodyLimitBytes);
    }
    /** Bytes of body kept in memory by this capture. */
    get retainedBytes() {
        return this.requestBody.capturedBytes + this.responseBody.capturedBytes;
    }
    /** Frees both body copies (heads and counts stay). */
    releaseBodies() {
        this.requestBody.release();
        this.responseBody.release();
    }
}
//# sourceMappingURL=capture.js.map