/**
 * The OriginClient (client.ts) on our own HTTP/1.1 client (http1.ts): every request and
 * upgrade to the origin, http or https. It costs less CPU per request than undici (an
 * A/B in the issue 17 note: ~30% more CLI CPU per small GET with undici) and, unlike
 * undici, still reads an early answer (a 413 for an upload) when a plain-http origin
 * resets the connection while the body is being sent (see origin-client.test.ts).
 */
import type { Readable } from 'node:stream';
import type {
  OriginCall,
  OriginClient,
  OriginRequest,
  OriginResponseHead,
  ResponseSink,
  UpgradeSink,
} from './client.js';
import type { OriginSocket } from './early-answer-socket.js';
import { Http1Pool, type Http1PoolOptions, type Http1Request, type Http1Sink } from './http1.js';
import type { ParsedResponseHead } from './response-parser.js';

export class Http1OriginClient implements OriginClient {
  private readonly pool: Http1Pool;
  private readonly onConnected: ((socket: OriginSocket) => void) | undefined;

  /** `onConnected`: every new connection, once connected (and secured). */
  constructor(options: Http1PoolOptions & { onConnected?: (s: OriginSocket) => void }) {
    this.pool = new Http1Pool(options);
    this.onConnected = options.onConnected;
  }

  request(request: OriginRequest, sink: ResponseSink): OriginCall {
    return this.send(request, sink, undefined);
  }

  upgrade(request: OriginRequest, protocol: string, sink: UpgradeSink): OriginCall {
    return this.send(request, sink, protocol);
  }

  dropIdle(): void {
    this.pool.dropIdle();
  }

  close(): void {
    this.pool.close();
  }

  private send(
    request: OriginRequest,
    sink: ResponseSink | UpgradeSink,
    upgrade: string | undefined,
  ): OriginCall {
    const http1Sink: Http1Sink = {
      onConnect: (socket) => this.onConnected?.(socket),
      onHead: (head) => sink.onHead(responseHead(head)),
      onBody: (chunk) => {
        if (!sink.onData(chunk)) lean.pause();
      },
      onComplete: () => {
        request.body?.destroy();
        sink.onEnd();
      },
      onError: (err, responseStarted) => {
        request.body?.destroy();
        sink.onError(err, { reused: lean.reused, responseStarted });
      },
    };
    // Only an upgrade pays for this closure (requests are the hot path).
    if (upgrade !== undefined) {
      http1Sink.onUpgrade = (head, socket) => {
        (sink as UpgradeSink).onUpgrade(responseHead(head), socket);
      };
    }
    const lean: Http1Request = this.pool.request(
      request.method,
      request.path,
      request.headers,
      http1Sink,
      { fresh: request.fresh === true, upgrade },
    );
    if (request.body !== undefined) pipeBody(request.body, lean);
    return {
      resume: () => lean.resume(),
      abort: (err) => lean.destroy(err),
    };
  }
}

function responseHead(head: ParsedResponseHead): OriginResponseHead {
  const headers: [string, string][] = [];
  const raw = head.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.push([raw[i]!, raw[i + 1]!]);
  return { status: head.status, statusMessage: head.statusMessage, headers };
}

/** Moves `body` into `lean` as fast as its socket takes it. */
function pipeBody(body: Readable, lean: Http1Request): void {
  const resume = (): void => {
    body.resume();
  };
  body.on('data', (chunk: Buffer) => {
    if (!lean.write(chunk)) {
      body.pause();
      lean.once('drain', resume);
    }
  });
  body.once('end', () => lean.end());
  body.on('error', (err) => lean.destroy(err));
}
