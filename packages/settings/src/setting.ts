/**
 * One setting of a job, described once: its request name (the key of its table), where it lands
 * in the resolved configuration, its schema with bounds, its CLI flag and help, its default, and
 * the paper's value beside it. The HTTP request schemas, the CLI flags and usage text, the
 * settings tables of docs/settings.md and the bound checks of resolved configurations are all derived from the tables
 * (train-settings.ts, sample-settings.ts, eval-settings.ts), so none of them can disagree.
 */
import { type Static, type TObject, type TOptional, type TSchema, CloneType, Kind, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

import { configError } from './errors';

/**
 * - `required`: the request must give it;
 * - `default`: left out, it takes `default` (one place, this table);
 * - `optional`: left out, something else decides (`whenAbsent` says what: the preset's dropout,
 *   all T sampling steps...).
 */
export type Presence = 'required' | 'default' | 'optional';

interface SettingBase<S extends TSchema> {
  /** Type and bounds; its description is generated from `help`. */
  readonly schema: S;
  /** Where the value lands in the resolved configuration, e.g. `train.optimizer.learningRate`. */
  readonly path: string;
  /** CLI flag without dashes (`lr` → `--lr`); a boolean also gets `--no-<flag>`. */
  readonly flag: string;
  /** One-letter alias, e.g. `n` for `-n`. */
  readonly short?: string;
  /** What the value looks like in usage text (`N`, `X`, `SPEC`); unused for booleans. */
  readonly placeholder?: string;
  readonly help: string;
  /** The paper's value (Appendix B) or, where the paper is silent, its official code's; `source` says which. */
  readonly paper?: { readonly value: Static<S>; readonly source: string };
  /** `job`: only in job requests (`ddpm jobs submit`, the HTTP API), not in the local commands. */
  readonly scope?: 'job';
}

export type Setting<S extends TSchema = TSchema, P extends Presence = Presence> = SettingBase<S> & {
  readonly presence: P;
  /** The one default of a `default` setting. */
  readonly default?: Static<S>;
  /** Why the default differs from the paper's value, where it does on purpose (small CPU runs). */
  readonly differsFromPaper?: string;
  /** For `optional` settings: what decides when it is left out. */
  readonly whenAbsent?: string;
};

export type SettingTable = Readonly<Record<string, Setting>>;

export function required<S extends TSchema>(spec: SettingBase<S>): Setting<S, 'required'> {
  return { ...spec, presence: 'required' };
}

export function withDefault<S extends TSchema>(
  spec: SettingBase<S> & { readonly default: Static<S>; readonly differsFromPaper?: string },
): Setting<S, 'default'> {
  return { ...spec, presence: 'default' };
}

export function optional<S extends TSchema>(
  spec: SettingBase<S> & { readonly whenAbsent: string },
): Setting<S, 'optional'> {
  return { ...spec, presence: 'optional' };
}

/** A closed set of strings as a schema (`anyOf` of `const`s; OpenAPI 3.1 / JSON Schema 2020-12). */
export function literalUnion<T extends string>(values: readonly T[]) {
  return Type.Union(values.map((v) => Type.Literal(v)));
}

/** The request body's properties: required settings as they are, the others optional. */
export type RequestProperties<T extends SettingTable> = {
  [K in keyof T]: T[K] extends Setting<infer S, 'required'>
    ? S
    : T[K] extends Setting<infer S, Presence>
      ? TOptional<S>
      : never;
};
export type RequestOf<T extends SettingTable> = Static<TObject<RequestProperties<T>>>;

/** The values a resolver works with: defaults filled in; `optional` settings may be undefined. */
export type ValuesOf<T extends SettingTable> = {
  readonly [K in keyof T]: T[K] extends Setting<infer S, 'optional'>
    ? Static<S> | undefined
    : T[K] extends Setting<infer S, Presence>
      ? Static<S>
      : never;
};

/** The request body schema of a table: unknown fields rejected, each property documented. */
export function requestSchema<T extends SettingTable>(table: T, description: string): TObject<RequestProperties<T>> {
  const properties: Record<string, TSchema> = {};
  for (const [name, setting] of Object.entries(table)) {
    const documented = CloneType(setting.schema, {
      description: `${setting.help}${defaultText(setting) ? ` (${defaultText(setting)})` : ''}`,
      ...(setting.presence === 'default' ? { default: setting.default } : {}),
    });
    properties[name] = setting.presence === 'required' ? documented : Type.Optional(documented);
  }
  // The one assertion of the derivation: Object.entries loses the key-to-schema pairing that
  // RequestProperties<T> restores.
  return Type.Object(properties, { additionalProperties: false, description }) as TObject<RequestProperties<T>>;
}

/** The request's values with every default filled in. */
export function valuesOf<T extends SettingTable>(table: T, request: RequestOf<T>): ValuesOf<T> {
  const given = request as Readonly<Record<string, unknown>>;
  const values: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(table)) values[name] = given[name] ?? setting.default;
  // As in requestSchema: the per-key types are the table's, which Object.entries cannot carry.
  return values as ValuesOf<T>;
}

/** What a schema accepts, in words: "an integer in [1, 4096]", "one of grid, progressive". */
export function expectation(schema: TSchema): string {
  const s = schema as TSchema & Record<string, unknown>;
  const range = (): string => {
    const low =
      s['exclusiveMinimum'] !== undefined
        ? `(${String(s['exclusiveMinimum'])}`
        : s['minimum'] !== undefined
          ? `[${String(s['minimum'])}`
          : '(-∞';
    const high =
      s['exclusiveMaximum'] !== undefined
        ? `${String(s['exclusiveMaximum'])})`
        : s['maximum'] !== undefined
          ? `${String(s['maximum'])}]`
          : '∞)';
    return `${low}, ${high}`;
  };
  switch (s[Kind]) {
    case 'Integer':
      return `an integer in ${range()}`;
    case 'Number':
      return `a number in ${range()}`;
    case 'Boolean':
      return 'true or false';
    case 'String':
      return s['pattern'] !== undefined
        ? `a string matching ${String(s['pattern'])}`
        : `a string of ${String(s['minLength'] ?? 0)} to ${String(s['maxLength'] ?? '∞')} characters`;
    case 'Union':
      return `one of ${literalsOf(schema).join(', ')}`;
    case 'Literal':
      return JSON.stringify(s['const']);
    case 'Array':
      return `a list of ${String(s['minItems'] ?? 0)} to ${String(s['maxItems'] ?? '∞')} distinct values, each ${expectation(s['items'] as TSchema)}`;
    default:
      return 'a valid value';
  }
}

/** The values of a union of literals (empty for other schemas). */
export function literalsOf(schema: TSchema): string[] {
  // A union of one literal is the literal itself.
  const single = (schema as { const?: unknown }).const;
  if (typeof single === 'string') return [single];
  const anyOf = (schema as { anyOf?: { const?: unknown }[] }).anyOf ?? [];
  return anyOf.map((s) => s.const).filter((v): v is string => typeof v === 'string');
}

/** Why `value` is not acceptable for the setting named `name`, or undefined when it is. */
export function problemWith(name: string, setting: Setting, value: unknown): string | undefined {
  if (Value.Check(setting.schema, value)) return undefined;
  return `${name} must be ${expectation(setting.schema)}, got ${JSON.stringify(value)}`;
}

/** {@link checkRequest} as a type guard: after it, `request` is the table's request type. */
export function assertRequest<T extends SettingTable>(
  table: T,
  request: unknown,
  what: string,
): asserts request is RequestOf<T> {
  checkRequest(table, request, what);
}

/** Checks a request against its table: unknown fields, missing required ones, types and bounds. */
export function checkRequest(table: SettingTable, request: unknown, what: string): void {
  if (typeof request !== 'object' || request === null || Array.isArray(request))
    throw configError(`${what} request must be an object`);
  const given = request as Readonly<Record<string, unknown>>;
  for (const name of Object.keys(given)) {
    if (!Object.prototype.hasOwnProperty.call(table, name))
      throw configError(
        `${what} request has no setting ${JSON.stringify(name)}; it takes ${Object.keys(table).join(', ')}`,
      );
  }
  for (const [name, setting] of Object.entries(table)) {
    const value = given[name];
    if (value === undefined) {
      if (setting.presence === 'required') throw configError(`${what} request needs ${name}: ${setting.help}`);
      continue;
    }
    const problem = problemWith(name, setting, value);
    if (problem) throw configError(problem);
  }
}

/** The value at a dotted path of a plain object (undefined where the path leads nowhere). */
export function valueAt(object: unknown, path: string): unknown {
  let at: unknown = object;
  for (const part of path.split('.')) {
    if (typeof at !== 'object' || at === null) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}

/**
 * Checks the bounds of every setting at its place in a resolved configuration (one read from a
 * queue or a checkpoint, not only one just resolved), naming the setting. `config` is the object
 * at `prefix` (e.g. the TrainConfig for `train.`); presence is its schema's business.
 */
export function checkResolved(table: SettingTable, config: unknown, prefix: string): void {
  for (const [name, setting] of Object.entries(table)) {
    if (!setting.path.startsWith(prefix)) continue;
    const value = valueAt(config, setting.path.slice(prefix.length));
    if (value === undefined) continue;
    const problem = problemWith(`${name} (${setting.path})`, setting, value);
    if (problem) throw configError(problem);
  }
}

/** The default as docs/settings.md and usage text show it, with the paper's value where it differs. */
export function defaultText(setting: Setting): string {
  const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
  const paper = setting.paper;
  switch (setting.presence) {
    case 'required':
      return paper ? `required; paper: ${show(paper.value)}` : 'required';
    case 'default': {
      const base = `default ${show(setting.default)}`;
      if (!paper) return base;
      return Value.Equal(paper.value, setting.default)
        ? `${base}, as the paper`
        : `${base} (service default); paper: ${show(paper.value)}`;
    }
    case 'optional':
      return `default: ${setting.whenAbsent ?? 'none'}`;
    default: {
      const unreachable: never = setting.presence;
      return String(unreachable);
    }
  }
}
