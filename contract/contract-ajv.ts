import { Ajv } from 'ajv';

/**
 * The one Ajv the contract's schemas are compiled in (and the agent's settings: each instance compiles the JSON
 * Schema meta-schema first, to check the schemas it is given). The observation union is added to it once, by its $id, and
 * reports and wire messages refer to it rather than embed it: compiling the union costs about 300 ms on this machine
 * (far more in a TCG guest, at every agent start), and embedded it was compiled three times. References are not
 * inlined, for the same reason.
 */
export const contractAjv = new Ajv({ allErrors: false, strict: true, discriminator: true, inlineRefs: false });
