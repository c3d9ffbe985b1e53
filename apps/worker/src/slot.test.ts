/**
 * The slot's record on the control plane (real Redis on 127.0.0.1:6379, a prefix of its own):
 * a claim names its claimer in `by` while the claimed slot serves it, and the field is cleared
 * when the slot is idle again or takes a job of its own, so that a coordinator never looks like
 * a rank claimed by someone else.
 */
import { randomBytes } from 'node:crypto';

import { Redis } from 'ioredis';

import { Slot } from './slot';

describe('Slot', () => {
  const prefix = `test-slot-${randomBytes(4).toString('hex')}`;
  const connections: Redis[] = [];
  const slots: Slot[] = [];

  function newSlot(): Slot {
    const redis = new Redis('redis://127.0.0.1:6379');
    const blocking = new Redis('redis://127.0.0.1:6379');
    connections.push(redis, blocking);
    const slot = new Slot(redis, blocking, prefix);
    slots.push(slot);
    return slot;
  }

  async function record(slot: Slot): Promise<Record<string, string>> {
    return connections[0]!.hgetall(`${prefix}:slot:${slot.id}`);
  }

  afterAll(async () => {
    for (const slot of slots) await slot.stop();
    for (const c of connections) c.disconnect();
  });

  it('names the claimer while the claimed slot serves the claim, and forgets it afterwards', async () => {
    const a = newSlot();
    const b = newSlot();
    await a.start();
    await b.start();

    expect(await a.enter('waiting', { job: 'job-1', priority: 1 })).toBe(true);
    expect(await a.claim('job-1', 1, 1, 1)).toEqual({ outcome: 'ok', slots: [b.id] });
    expect(await record(a)).toMatchObject({ state: 'busy', job: 'job-1', by: '' });
    expect(await record(b)).toMatchObject({ state: 'claimed', job: 'job-1', by: a.id });

    // The rank runs (still serving a's claim), then goes idle: no claimer any more.
    await b.setState('busy', { job: 'job-1' });
    expect(await record(b)).toMatchObject({ state: 'busy', by: a.id });
    await b.leave();
    expect(await record(b)).toMatchObject({ state: 'idle', job: '', by: '' });

    // b coordinates a job of its own: its record must not name a's old claim.
    await a.leave();
    expect(await b.enter('waiting', { job: 'job-2', priority: 2 })).toBe(true);
    expect(await record(b)).toMatchObject({ state: 'waiting', job: 'job-2', by: '' });
    expect(await b.claim('job-2', 2, 1, 1)).toEqual({ outcome: 'ok', slots: [a.id] });
    expect(await record(b)).toMatchObject({ state: 'busy', by: '' });
    expect(await record(a)).toMatchObject({ state: 'claimed', by: b.id });

    // A claim whose assignment never comes is freed to idle, and so is its claimer's name.
    await a.setState('idle');
    expect(await record(a)).toMatchObject({ state: 'idle', by: '' });
  });
});
