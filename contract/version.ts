/** Kept equal to package.json's version by a test; the bundled agent cannot read package.json at run time. */
export const FLINCH_VERSION = '0.1.0';
