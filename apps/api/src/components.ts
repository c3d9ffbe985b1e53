/**
 * The schemas the OpenAPI document names (components/schemas) rather than repeats: each is
 * registered once with an $id and referenced by routes and by other schemas, keeping the document
 * and the client types generated from it small and their names meaningful.
 */
import { CloneType, type Static, type TSchema, type TUnsafe, Type } from '@sinclair/typebox';
import { type FastifyInstance } from 'fastify';

export interface Component<T extends TSchema> {
  readonly name: string;
  /** The schema with its $id, for app.addSchema. */
  readonly schema: T;
  /** A reference to it that carries its static type. */
  readonly ref: TUnsafe<Static<T>>;
}

const registry: Component<TSchema>[] = [];

export function component<T extends TSchema>(name: string, schema: T): Component<T> {
  const named: Component<T> = {
    name,
    schema: CloneType(schema, { $id: name }),
    ref: Type.Unsafe<Static<T>>(Type.Ref(name)),
  };
  registry.push(named);
  return named;
}

/** Registers every component with the app (before routes that reference them). */
export function registerComponents(app: FastifyInstance): void {
  for (const c of registry) app.addSchema(c.schema);
}

/** The same reference with a description (a response's, say). */
export function described<T extends TSchema>(c: Component<T>, description: string): TUnsafe<Static<T>> {
  return CloneType(c.ref, { description });
}
