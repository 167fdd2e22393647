/**
 * Hostname labels: random ones for ephemeral tunnels, validation for named ones.
 */
import { randomBytes } from 'node:crypto';

/** DNS-safe alphabet without look-alikes (no 0/1/l/o). 32 symbols = 5 bits each. */
const ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789';

/** Length of a random label: 10 × 5 bits = 50 bits of entropy. */
export const RANDOM_LABEL_LENGTH = 10;

/** A random label; starts with a letter so it is never all digits. */
export function randomLabel(random: (n: number) => Buffer = randomBytes): string {
  const bytes = random(RANDOM_LABEL_LENGTH);
  let out = ALPHABET[bytes[0]! % 24]!; // first char: a letter (first 24 symbols)
  for (let i = 1; i < RANDOM_LABEL_LENGTH; i++) out += ALPHABET[bytes[i]! & 31]!;
  return out;
}

/**
 * True if `name` has the shape of a random label: exactly RANDOM_LABEL_LENGTH symbols of
 * ALPHABET, the first a letter. Names people choose can never have this shape, so the
 * space of ephemeral hostnames and the space of named tunnels cannot meet: nobody can
 * reserve an ephemeral tunnel's hostname while its owner is away (a network drop, a
 * relay restart), and the owner's resume token always gets it back.
 */
export function hasRandomLabelShape(name: string): boolean {
  return RANDOM_LABEL_SHAPE.test(name);
}

const RANDOM_LABEL_SHAPE = new RegExp(
  `^[${ALPHABET.slice(0, 24)}][${ALPHABET}]{${RANDOM_LABEL_LENGTH - 1}}$`,
);

/** Labels the relay keeps for itself. */
export const RESERVED_LABELS = new Set([
  'www',
  'api',
  'admin',
  'relay',
  'tunnel',
  'tunnels',
  'status',
  'health',
  'metrics',
  'mail',
  'ns',
  'ns1',
  'ns2',
  'localhost',
  '_qt',
]);

/** Why `name` can't be a tunnel name, or undefined when it can (DNS label rules). */
export function invalidNameReason(name: string): string | undefined {
  if (name.length < 3 || name.length > 63) return 'names are 3 to 63 characters long';
  if (!/^[a-z0-9-]+$/.test(name)) return 'names use only lowercase letters, digits and hyphens';
  if (name.startsWith('-') || name.endsWith('-')) return 'names cannot start or end with a hyphen';
  if (name.slice(2, 4) === '--') return 'names cannot have hyphens in the 3rd and 4th positions';
  if (RESERVED_LABELS.has(name)) return `'${name}' is reserved by the relay`;
  if (hasRandomLabelShape(name)) {
    return `${RANDOM_LABEL_LENGTH}-character names made only of letters and the digits 2-9 (no l, o) are kept for random tunnel hostnames: add a hyphen, or use another length`;
  }
  return undefined;
}
