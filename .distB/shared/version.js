/** quick-tunnel's version (kept equal to package.json's by test/shared/version.test.ts). */
export const VERSION = '0.1.0';
//# sourceMappingURL=version.js.map