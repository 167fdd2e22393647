/**
 * Settings that code in shared/ reads from the environment, for the relay and the CLI
 * alike (and for a test runner that embeds them). With cli/config.ts, the only modules
 * that read process.env.
 */

/**
 * `QUICK_TUNNEL_SPEED_TRICKS`: which of shared/speed.ts's tricks are on. `on` or unset:
 * all; `off`: none; else a comma-separated list of the ones to keep on. Parsed (and
 * refused when unknown) by shared/speed.ts.
 */
export function readSpeedTricksSetting(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env['QUICK_TUNNEL_SPEED_TRICKS'];
  return value === undefined || value.trim() === '' ? undefined : value;
}
