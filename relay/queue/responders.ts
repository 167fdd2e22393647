/**
 * How the queue answers a visitor, over HTTP/1.1 (a ServerResponse) or HTTP/2 (a
 * server stream): the 202 for a kept request, an error page, or an abort.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants, type ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { sendH2Error } from '../edge/h2.js';
import { sendError, type ErrorPage } from '../edge/pages.js';

export interface QueueResponder {
  /** The request body, as it arrives. */
  readonly body: Readable;
  /** Answers with an error page; a body not read to its end is not read any further. */
  page(page: ErrorPage): void;
  /** Answers a kept request. */
  accepted(status: number, headers: Record<string, string>, body: string): void;
  /** Drops the exchange (the sender went away mid-body). */
  abort(): void;
}

export function h1Responder(req: IncomingMessage, res: ServerResponse): QueueResponder {
  return {
    body: req,
    page(page) {
      if (!req.readableEnded) {
        // Close the connection after the answer rather than drain a body we refused.
        res.shouldKeepAlive = false;
        res.once('finish', () => req.destroy());
      }
      sendError(res, req.headers, page);
    },
    accepted(status, headers, body) {
      res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    },
    abort() {
      res.destroy();
    },
  };
}

export function h2Responder(stream: ServerHttp2Stream, req: IncomingMessage): QueueResponder {
  return {
    body: stream,
    page(page) {
      sendH2Error(stream, req.headers, page);
    },
    accepted(status, headers, body) {
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ':status': status, ...headers, 'content-length': Buffer.byteLength(body) });
      stream.end(body);
    },
    abort() {
      if (!stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
    },
  };
}
