// Lets benchmarks run from TypeScript sources with the same loader tap uses for the tests (transpile only).
process.env.TS_NODE_TRANSPILE_ONLY ??= '1';
await import('@isaacs/ts-node-temp-fork-for-pr-2009/import');
