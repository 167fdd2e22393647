import { readFileSync } from 'node:fs';
import t from 'tap';
import { VERSION } from '../../shared/version.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
t.equal(VERSION, pkg.version, 'shared/version.ts matches package.json');
