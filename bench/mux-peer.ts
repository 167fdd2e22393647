/**
 * One end of the mux benchmark, in its own process; `bench/mux.ts` starts two of them,
 * identical and fresh, so neither end carries the orchestrator's imports or heap.
 *
 * - Relay role (`listen`): a TLS or plain WebSocket listener on 127.0.0.1 that accepts
 *   mux sessions and serves each stream its plan (count `up` bytes, send `down` bytes,
 *   then FIN), plus a bare TLS/TCP listener for the `raw` reference phase (count until
 *   FIN, answer with the count).
 * - Client role (`connect`, `run`): dials the relay with the ws options the CLI uses and
 *   moves the data of each phase, timing it.
 *
 * Every sender writes one reused buffer; every receiver only counts. Both roles answer
 * `phase-start`/`phase-end` with their RSS and CPU figures. A process exits when the
 * orchestrator goes away, so a killed benchmark leaves nothing behind.
 */
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import { ErrorCode } from '../shared/protocol/frame.js';
import { MuxSession } from '../shared/mux/session.js';
import type { MuxStream } from '../shared/mux/stream.js';
import {
  tunnelClientWsOptions,
  tunnelServerWsOptions,
  wsTransport,
} from '../shared/mux/transport.js';
import type { ParentMessage, PeerMessage, StreamPlan } from './mux-ipc.js';
import { PhaseMeter, bufferutilLoaded } from './process-stats.js';
import { countBytes, patternBuffer, sendBytes } from './traffic.js';

function send(msg: PeerMessage): void {
  process.send?.(msg);
}

function fail(err: unknown): void {
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
}

// ---- relay role -------------------------------------------------------------------

function serveStream(stream: MuxStream, chunk: Buffer): void {
  const plan = stream.meta as unknown as StreamPlan;
  Promise.all([countBytes(stream), sendBytes(stream, plan.down, chunk)]).then(([received]) => {
    if (received === plan.up) stream.end();
    else stream.reset(ErrorCode.INTERNAL_ERROR, `expected ${plan.up} bytes, got ${received}`);
  }, fail);
}

/** Raw reference: count bytes until the client's FIN, reply with the count (u64). */
function serveRaw(socket: net.Socket): void {
  socket.on('error', fail);
  countBytes(socket).then((received) => {
    const reply = Buffer.alloc(8);
    reply.writeBigUInt64BE(BigInt(received));
    socket.end(reply);
  }, fail);
}

async function listen(msg: Extract<ParentMessage, { type: 'listen' }>): Promise<PeerMessage> {
  const chunk = patternBuffer(msg.chunkBytes);
  const secure = msg.transport === 'tls';
  const server = secure
    ? https.createServer({ cert: msg.cert, key: msg.key })
    : http.createServer();
  const wss = new WebSocketServer({ server, ...tunnelServerWsOptions(msg.mux) });
  wss.on('connection', (ws) => {
    const session = new MuxSession(wsTransport(ws), 'server', msg.mux);
    session.on('stream', (stream) => serveStream(stream, chunk));
    session.accept(() => ({ ok: true })).catch(fail);
  });
  server.on('error', fail);
  // allowHalfOpen: the reply goes out after the client's FIN.
  const raw = secure
    ? tls.createServer({ cert: msg.cert, key: msg.key, allowHalfOpen: true }, serveRaw)
    : net.createServer({ allowHalfOpen: true }, serveRaw);
  raw.on('error', fail);
  server.listen(0, '127.0.0.1');
  raw.listen(0, '127.0.0.1');
  await Promise.all([once(server, 'listening'), once(raw, 'listening')]);
  return {
    type: 'listening',
    port: (server.address() as AddressInfo).port,
    rawPort: (raw.address() as AddressInfo).port,
    bufferutil: bufferutilLoaded(process.env),
  };
}

// ---- client role ------------------------------------------------------------------

interface ClientState {
  session: MuxSession;
  raw: net.Socket;
  chunk: Buffer;
}

let client: ClientState | undefined;

async function connect(msg: Extract<ParentMessage, { type: 'connect' }>): Promise<PeerMessage> {
  const secure = msg.transport === 'tls';
  const url = `${secure ? 'wss' : 'ws'}://127.0.0.1:${msg.port}/`;
  // What the CLI uses; --mask overrides its choice of masking key.
  const options: WebSocket.ClientOptions & { servername?: string } = {
    ...tunnelClientWsOptions(url, msg.mux),
  };
  if (msg.mask === 'random') delete options.generateMask;
  if (msg.mask === 'zero') {
    options.generateMask = tunnelClientWsOptions('wss://relay', msg.mux).generateMask!;
  }
  if (secure) {
    options.ca = msg.ca;
    options.servername = msg.servername;
  }
  const ws = new WebSocket(url, options);
  let cipher: string | undefined;
  ws.once('upgrade', (res) => {
    if (secure) cipher = (res.socket as TLSSocket).getCipher().standardName;
  });
  await once(ws, 'open');
  const session = new MuxSession(wsTransport(ws), 'client', msg.mux);
  await session.connect({ bench: 'mux' });
  const raw = secure
    ? tls.connect({ host: '127.0.0.1', port: msg.rawPort, ca: msg.ca, servername: msg.servername })
    : net.connect(msg.rawPort, '127.0.0.1');
  await once(raw, secure ? 'secureConnect' : 'connect');
  raw.setNoDelay(true); // as ws does
  client = { session, raw, chunk: patternBuffer(msg.chunkBytes) };
  return {
    type: 'connected',
    url,
    cipher,
    mask: options.generateMask === undefined ? 'random' : 'zero',
    bufferutil: bufferutilLoaded(process.env),
  };
}

function runStream(session: MuxSession, plan: StreamPlan, chunk: Buffer): Promise<void> {
  const stream = session.openStream({ ...plan });
  const sent = sendBytes(stream, plan.up, chunk).then(() => {
    stream.end();
  });
  return Promise.all([sent, countBytes(stream)]).then(([, received]) => {
    if (received !== plan.down) {
      throw new Error(`stream ${stream.id}: expected ${plan.down} bytes, got ${received}`);
    }
  });
}

/** Sends `bytes` on the raw socket, then FIN; the relay answers with what it counted. */
async function runRaw(socket: net.Socket, bytes: number, chunk: Buffer): Promise<void> {
  const reply: Buffer[] = [];
  socket.on('data', (c: Buffer) => reply.push(c));
  const ended = once(socket, 'end');
  await sendBytes(socket, bytes, chunk);
  socket.end();
  await ended;
  const received = Number(Buffer.concat(reply).readBigUInt64BE(0));
  if (received !== bytes) throw new Error(`raw: expected ${bytes} bytes, relay got ${received}`);
}

async function run(msg: Extract<ParentMessage, { type: 'run' }>): Promise<PeerMessage> {
  if (client === undefined) throw new Error('run before connect');
  const { session, raw, chunk } = client;
  const started = performance.now();
  if (msg.work === 'raw') await runRaw(raw, msg.bytes, chunk);
  else await Promise.all(msg.plans.map((plan) => runStream(session, plan, chunk)));
  return { type: 'ran', wallMs: performance.now() - started };
}

// ---- both -------------------------------------------------------------------------

async function makeCert(domain: string): Promise<PeerMessage> {
  // Only in a throwaway process: see makeCertificate in bench/mux.ts.
  const { generateCertificate } = await import('../relay/edge/certificate.js');
  const { cert, key } = await generateCertificate(domain);
  return { type: 'cert', cert, key };
}

const meter = new PhaseMeter();

function handle(msg: ParentMessage): Promise<PeerMessage> {
  switch (msg.type) {
    case 'listen':
      return listen(msg);
    case 'connect':
      return connect(msg);
    case 'run':
      return run(msg);
    case 'make-cert':
      return makeCert(msg.domain);
    case 'phase-start':
      meter.start();
      return Promise.resolve({ type: 'phase-started' });
    case 'phase-end':
      return Promise.resolve({ type: 'phase-stats', stats: meter.stop() });
  }
}

process.on('message', (msg: ParentMessage) => {
  handle(msg).then(send, fail);
});
// The orchestrator closed the channel (done, timed out or killed): nothing left to do.
process.on('disconnect', () => process.exit(0));
