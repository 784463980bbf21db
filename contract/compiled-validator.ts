import type { ErrorObject } from 'ajv';

/**
 * A validator Ajv compiled ahead of time (packaging/validators/generate-validators.ts): the call, and the errors of its
 * last call, as a compiled ValidateFunction has them.
 */
export interface CompiledValidator<T> {
  (data: unknown): data is T;
  errors?: ErrorObject[] | null;
}

/** Types a function of a generated module, which is not type-checked itself. */
export function compiledValidator<T>(generated: unknown): CompiledValidator<T> {
  return generated as CompiledValidator<T>;
}
