/**
 * Submitting a job: a form per job type, generated from the API's own request schemas (which come
 * from the settings tables, so the names, defaults, bounds and help are the API's and the CLI's).
 * Only the fields filled in are sent; the API's 4xx answer is shown next to the field it names.
 */
import { useEffect, useState } from 'preact/hooks';

import { ApiError, type JobView, getJson, sendJson } from './api';
import { navigate } from './nav';

interface Schema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
}

const KINDS = { train: 'TrainRequest', sample: 'SampleRequest', eval: 'EvalRequest' } as const;
type Kind = keyof typeof KINDS;

/** The choices of an enum-like schema (an enum, or a union of constants). */
function choices(s: Schema): string[] | undefined {
  if (s.enum) return s.enum.map(String);
  // A union of constants: `const`, or (in OpenAPI 3.1 as the API writes it) one-value enums.
  const constant = (a: Schema): unknown =>
    a.const !== undefined ? a.const : a.enum?.length === 1 ? a.enum[0] : undefined;
  if (s.anyOf && s.anyOf.every((a) => constant(a) !== undefined)) return s.anyOf.map((a) => String(constant(a)));
  return undefined;
}

function kindOf(s: Schema): string {
  // A list of types (a nullable field's) reads as its first; an empty list as a string.
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  return type ?? (choices(s) ? 'string' : 'string');
}

/** The field's value as the request wants it, or undefined when left empty; throws naming what is wrong. */
function parse(name: string, s: Schema, raw: string | boolean | string[]): unknown {
  if (typeof raw === 'boolean') return raw;
  if (Array.isArray(raw)) return raw.length > 0 ? raw : undefined;
  if (raw.trim() === '') return undefined;
  const type = kindOf(s);
  if (type === 'integer' || type === 'number') {
    const n = Number(raw);
    if (!Number.isFinite(n) || (type === 'integer' && !Number.isInteger(n)))
      throw new Error(`${name} must be ${type === 'integer' ? 'an integer' : 'a number'}`);
    if (s.minimum !== undefined && n < s.minimum) throw new Error(`${name} must be at least ${s.minimum}`);
    if (s.maximum !== undefined && n > s.maximum) throw new Error(`${name} must be at most ${s.maximum}`);
    return n;
  }
  return raw;
}

interface FieldProps {
  name: string;
  schema: Schema;
  value: string | boolean | string[] | undefined;
  error?: string;
  onChange: (v: string | boolean | string[]) => void;
}

/** A yes/no field: a select whose empty choice leaves the default. */
function BooleanInput(props: FieldProps & { placeholder: string }) {
  const { name, value, placeholder } = props;
  return (
    <select
      name={name}
      value={value === undefined ? '' : String(value)}
      onChange={(e) => props.onChange(e.currentTarget.value === '' ? '' : e.currentTarget.value === 'true')}
    >
      <option value="">{placeholder || 'default'}</option>
      <option value="true">yes</option>
      <option value="false">no</option>
    </select>
  );
}

/** A field of a few choices: a select whose empty choice leaves the default. */
function ChoiceInput(props: FieldProps & { placeholder: string; options: string[] }) {
  const { name, value, placeholder, options } = props;
  return (
    <select
      name={name}
      value={typeof value === 'string' ? value : ''}
      onChange={(e) => props.onChange(e.currentTarget.value)}
    >
      <option value="">{placeholder || '—'}</option>
      {options.map((o) => (
        <option value={o}>{o}</option>
      ))}
    </select>
  );
}

/** A list whose items are choices: a checkbox for each. */
function MultiInput(props: FieldProps & { options: string[] }) {
  const { name, value, options } = props;
  const chosen = Array.isArray(value) ? value : [];
  return (
    <span class="multi">
      {options.map((o) => (
        <label>
          <input
            type="checkbox"
            name={name}
            value={o}
            checked={chosen.includes(o)}
            onChange={(e) => props.onChange(e.currentTarget.checked ? [...chosen, o] : chosen.filter((c) => c !== o))}
          />{' '}
          {o}
        </label>
      ))}
    </span>
  );
}

/** Any other field: a number input for numbers, a text input for the rest. */
function TextInput(props: FieldProps & { placeholder: string; type: string }) {
  const { name, schema: s, value, placeholder, type } = props;
  return (
    <input
      name={name}
      type={type === 'integer' || type === 'number' ? 'number' : 'text'}
      step={type === 'integer' ? 1 : 'any'}
      min={s.minimum}
      max={s.maximum}
      minLength={s.minLength}
      maxLength={s.maxLength}
      placeholder={placeholder}
      value={typeof value === 'string' ? value : ''}
      onInput={(e) => props.onChange(e.currentTarget.value)}
    />
  );
}

/** The input that fits a field's schema. */
function FieldInput(props: FieldProps) {
  const s = props.schema;
  const options = choices(s);
  const type = kindOf(s);
  const itemChoices = s.items ? choices(s.items) : undefined;
  const placeholder = s.default !== undefined ? `default ${JSON.stringify(s.default)}` : '';
  if (type === 'boolean') return <BooleanInput {...props} placeholder={placeholder} />;
  if (options) return <ChoiceInput {...props} placeholder={placeholder} options={options} />;
  if (type === 'array' && itemChoices) return <MultiInput {...props} options={itemChoices} />;
  return <TextInput {...props} placeholder={placeholder} type={type} />;
}

function Field(props: FieldProps) {
  const { name, schema: s, error } = props;
  return (
    <div class={`field${error ? ' invalid' : ''}`} data-field={name}>
      <label>
        <span class="name">{name}</span>
        <FieldInput {...props} />
      </label>
      {error ? (
        <span class="field-error" role="alert">
          {error}
        </span>
      ) : null}
      {s.description ? <small>{s.description}</small> : null}
    </div>
  );
}

/** The field an API error names: the one it names first (as a word), the longest at a tie. */
function fieldOf(message: string, names: readonly string[]): string | undefined {
  let best: { name: string; at: number } | undefined;
  for (const name of names) {
    const m = new RegExp(`(^|[^A-Za-z0-9])${name}([^A-Za-z0-9]|$)`).exec(message);
    if (!m) continue;
    // The match starts at the character before the name, if any.
    const at = m.index + (m[1] ?? '').length;
    if (!best || at < best.at || (at === best.at && name.length > best.name.length)) best = { name, at };
  }
  return best?.name;
}

export function SubmitPage() {
  const [kind, setKind] = useState<Kind>((new URLSearchParams(location.search).get('type') as Kind) || 'train');
  const [schemas, setSchemas] = useState<Record<string, Schema> | undefined>();
  const [values, setValues] = useState<Record<string, string | boolean | string[]>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [general, setGeneral] = useState<string | undefined>();
  useEffect(() => {
    getJson<{ components: { schemas: Record<string, Schema> } }>('/docs/json').then(
      (doc) => setSchemas(doc.components.schemas),
      (err: unknown) => setGeneral(err instanceof ApiError ? err.message : String(err)),
    );
  }, []);
  const schema = schemas?.[KINDS[kind]];
  const properties = Object.entries(schema?.properties ?? {});
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const body: Record<string, unknown> = {};
    const problems: Record<string, string> = {};
    for (const [name, s] of properties) {
      const raw = values[name];
      if (raw === undefined || raw === '') continue;
      try {
        const v = parse(name, s, raw);
        if (v !== undefined) body[name] = v;
      } catch (err) {
        problems[name] = (err as Error).message;
      }
    }
    setErrors(problems);
    setGeneral(undefined);
    if (Object.keys(problems).length > 0) return;
    try {
      const job = await sendJson<JobView>('POST', `/jobs/${kind}`, body);
      navigate(`/ui/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      const message = err instanceof ApiError ? err.message : String(err);
      const field = fieldOf(
        message,
        properties.map(([n]) => n),
      );
      if (field) setErrors({ [field]: message });
      else setGeneral(message);
    }
  };
  return (
    <section>
      <div class="toolbar">
        <h1>New job</h1>
        {(Object.keys(KINDS) as Kind[]).map((k) => (
          <button class={k === kind ? 'selected' : 'quiet'} onClick={() => (setKind(k), setValues({}), setErrors({}))}>
            {k}
          </button>
        ))}
      </div>
      {general ? (
        <p class="error" role="alert">
          {general}
        </p>
      ) : null}
      {schema === undefined ? (
        <p>Loading the settings…</p>
      ) : (
        <form class="submit" onSubmit={(e) => void submit(e)} noValidate>
          {properties.map(([name, s]) => (
            <Field
              key={`${kind}.${name}`}
              name={name}
              schema={s}
              value={values[name]}
              error={errors[name]}
              onChange={(v) => setValues({ ...values, [name]: v })}
            />
          ))}
          <button type="submit">Submit {kind} job</button>
        </form>
      )}
    </section>
  );
}
