/**
 * The package's main entry, `import { … } from 'quick-tunnel'`. Everything exported here
 * is the public, semver-covered surface (listed in the README); other modules are
 * internal and not reachable through the package's `exports`. Importing it changes
 * nothing in the process: no V8 flags, no signal handlers, no timers, no output.
 */
export {
  openTunnel,
  type OpenTunnelOptions,
  type Tunnel,
  type TunnelEventMap,
  type TunnelRequestEvent,
  type TunnelReconnectingEvent,
  type TunnelReconnectedEvent,
  type TunnelClosedEvent,
} from './open-tunnel.js';
export {
  QuickTunnelError,
  AuthError,
  ConfigError,
  ConnectionError,
  OriginError,
  ProtocolError,
} from '../../shared/errors.js';
export { VERSION } from '../../shared/version.js';
