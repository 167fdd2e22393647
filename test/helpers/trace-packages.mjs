// `node --import <this file>`: prints `package <name>` on stderr for every import that
// resolves into node_modules (test/e2e/startup-imports.test.ts reads them).
import { register } from 'node:module';

const hooks = `
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  const match = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(resolved.url);
  if (match) process.stderr.write('package ' + match[1] + '\\n');
  return resolved;
}
`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
