/**
 * The OriginClient (client.ts) on our own HTTP/1.1 client (http1.ts) for the requests
 * to a plain-http origin; upgrades go to `upgrades` (undici). The default for http
 * origins: it costs less CPU per request than undici and, unlike undici, still reads
 * an early answer (a 413 for an upload) when the origin resets the connection while
 * the body is being sent (see origin-client.test.ts and docs in the origin note).
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type {
  OriginCall,
  OriginClient,
  OriginRequest,
  ResponseSink,
  UpgradeSink,
} from './client.js';
import { Http1Pool, type Http1PoolOptions, type Http1Request } from './http1.js';

export class Http1OriginClient implements OriginClient {
  private readonly pool: Http1Pool;
  private readonly upgrades: OriginClient;
  private readonly onConnected: ((socket: Socket) => void) | undefined;

  /** `onConnected`: every new connection, once connected. */
  constructor(
    options: Http1PoolOptions & { onConnected?: (s: Socket) => void },
    upgrades: OriginClient,
  ) {
    this.pool = new Http1Pool(options);
    this.upgrades = upgrades;
    this.onConnected = options.onConnected;
  }

  request(request: OriginRequest, sink: ResponseSink): OriginCall {
    const lean: Http1Request = this.pool.request(
      request.method,
      request.path,
      request.headers,
      {
        onConnect: (socket) => this.onConnected?.(socket),
        onHead: (head) => {
          const headers: [string, string][] = [];
          const raw = head.rawHeaders;
          for (let i = 0; i + 1 < raw.length; i += 2) headers.push([raw[i]!, raw[i + 1]!]);
          sink.onHead({ status: head.status, statusMessage: head.statusMessage, headers });
        },
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
      },
      { fresh: request.fresh === true },
    );
    if (request.body !== undefined) pipeBody(request.body, lean);
    return {
      resume: () => lean.resume(),
      abort: (err) => lean.destroy(err),
    };
  }

  upgrade(request: OriginRequest, protocol: string, sink: UpgradeSink): OriginCall {
    return this.upgrades.upgrade(request, protocol, sink);
  }

  dropIdle(): void {
    this.pool.dropIdle();
    this.upgrades.dropIdle();
  }

  close(): void {
    this.pool.close();
    this.upgrades.close();
  }
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
