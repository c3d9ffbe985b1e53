/**
 * This worker's slot on the control plane (docs/groups.md, "Forming a group"). Every worker
 * process is one slot: it advertises itself with a heartbeat and a state, and a group forms only
 * when one atomic step (a Lua script) claims all the slots it needs; a group that waited while
 * holding some workers would deadlock (two jobs of 2 on 2 workers, each holding one).
 *
 * A worker that advertises a data server of its own (DDPM_RANK_DATA_URL) PINGs it with every
 * heartbeat and says so in its slot (`data`: ok or down); an idle slot whose data server is down
 * is not claimed, so a group re-forms without it until its server is back.
 *
 * States: `idle` (may be claimed), `waiting` (coordinating a group job that still needs ranks:
 * may be claimed by an older job, which wins; its own job goes back to the queue), `claimed`
 * (assigned to a group, its assignment on the way; `by` names the claiming slot while the slot
 * serves that claim), `busy` (running a job or a rank). The oldest
 * waiting job can always take every idle and every younger waiting slot, so some group always
 * makes progress: neither deadlock nor livelock. Assignments arrive in the slot's inbox list.
 */
import { randomUUID } from 'node:crypto';
import * as os from 'node:os';

import { slotInboxKey, slotKey, slotKeyPrefix, slotsKey } from '@ddpm/service';
import { Redis } from 'ioredis';

export type SlotState = 'idle' | 'waiting' | 'claimed' | 'busy';

/** Slots with no heartbeat for this long are not claimed (their worker is gone). */
const STALE_MS = 10_000;
const BEAT_MS = 2_000;
/** A claimed slot whose assignment does not come (its claimer died) frees itself after this. */
const CLAIM_EXPIRES_MS = 30_000;

const CLAIM = `
local slotPrefix, me, job = ARGV[1], ARGV[2], ARGV[3]
local priority, need, atLeast = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now, stale = tonumber(ARGV[7]), tonumber(ARGV[8])
local mine = slotPrefix .. me
if redis.call('HGET', mine, 'state') ~= 'waiting' or redis.call('HGET', mine, 'job') ~= job then
  return {'preempted', redis.call('HGET', mine, 'job') or ''}
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - stale, '+inf')
local idle, younger = {}, {}
for _, id in ipairs(live) do
  if id ~= me then
    local key = slotPrefix .. id
    local state = redis.call('HGET', key, 'state')
    if state == 'idle' and redis.call('HGET', key, 'data') ~= 'down' then
      table.insert(idle, id)
    elseif state == 'waiting' then
      local p = tonumber(redis.call('HGET', key, 'priority'))
      local j = redis.call('HGET', key, 'job')
      if p > priority or (p == priority and j > job) then table.insert(younger, {p, id}) end
    end
  end
end
table.sort(younger, function(a, b) return a[1] > b[1] end)
local take = {}
for _, id in ipairs(idle) do if #take < need then table.insert(take, id) end end
for _, w in ipairs(younger) do if #take < need then table.insert(take, w[2]) end end
if #take < atLeast then return {'short', tostring(#idle + #younger), tostring(#live)} end
for _, id in ipairs(take) do
  redis.call('HSET', slotPrefix .. id, 'state', 'claimed', 'job', job, 'by', me, 'since', tostring(now))
end
redis.call('HSET', mine, 'state', 'busy', 'by', '', 'since', tostring(now))
local out = {'ok'}
for _, id in ipairs(take) do table.insert(out, id) end
return out
`;

/** Moves a slot to a state unless a group has claimed it (then the claim wins). */
const ENTER = `
if redis.call('HGET', KEYS[1], 'state') == 'claimed' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'since', ARGV[2], 'job', ARGV[3], 'by', '', 'priority', ARGV[4])
return 1
`;

/** Back to idle, unless a group claimed the slot meanwhile (its assignment is on the way). */
const LEAVE = `
if redis.call('HGET', KEYS[1], 'state') == 'claimed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'idle', 'since', ARGV[1], 'job', '', 'by', '')
return 1
`;

export type ClaimResult =
  | { readonly outcome: 'ok'; readonly slots: readonly string[] }
  /** Not enough claimable slots now (`claimable` of `live`): nothing was claimed. */
  | { readonly outcome: 'short'; readonly claimable: number; readonly live: number }
  /** An older job claimed this slot meanwhile; give the job back and serve that one. */
  | { readonly outcome: 'preempted'; readonly by: string };

/** The Lua scripts the constructor defines on the control connection, as ioredis exposes them. */
interface SlotCommands {
  ddpmClaimSlots(...args: (string | number)[]): Promise<string[]>;
  ddpmEnterSlotState(...args: (string | number)[]): Promise<number>;
  ddpmLeaveSlot(...args: (string | number)[]): Promise<number>;
}

export class Slot {
  readonly id = `${os.hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  private timer: NodeJS.Timeout | undefined;

  /** The worker's own data server, PINGed with every heartbeat (absent: none advertised). */
  private readonly data: Redis | undefined;

  /**
   * @param redis commands on the control plane
   * @param blocking a connection of its own for the inbox's blocking reads
   * @param dataUrl the worker's own data server, when it advertises one
   */
  constructor(
    private readonly redis: Redis,
    private readonly blocking: Redis,
    private readonly prefix: string,
    dataUrl?: string,
  ) {
    if (dataUrl !== undefined) {
      this.data = new Redis(dataUrl, {
        lazyConnect: true,
        connectTimeout: 1500,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        retryStrategy: () => 1000,
      });
      this.data.on('error', () => undefined);
    }
    redis.defineCommand('ddpmClaimSlots', { numberOfKeys: 1, lua: CLAIM });
    redis.defineCommand('ddpmEnterSlotState', { numberOfKeys: 1, lua: ENTER });
    redis.defineCommand('ddpmLeaveSlot', { numberOfKeys: 1, lua: LEAVE });
  }

  private get commands(): SlotCommands {
    return this.redis as unknown as SlotCommands;
  }

  private get key(): string {
    return slotKey(this.prefix, this.id);
  }

  private get slotsKey(): string {
    return slotsKey(this.prefix);
  }

  get inbox(): string {
    return slotInboxKey(this.prefix, this.id);
  }

  async start(): Promise<void> {
    await this.redis.hset(this.key, {
      state: 'idle',
      pid: String(process.pid),
      host: os.hostname(),
      since: String(Date.now()),
    });
    await this.beat();
    this.timer = setInterval(() => void this.beat().catch(() => undefined), BEAT_MS);
    this.timer.unref();
  }

  /** Whether the worker's own data server answers (undefined: it advertises none). */
  private async dataHealth(): Promise<'ok' | 'down' | undefined> {
    const data = this.data;
    if (data === undefined) return undefined;
    try {
      if (data.status === 'wait' || data.status === 'end') await data.connect();
      const pong = await Promise.race([
        data.ping(),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 1500).unref()),
      ]);
      return pong === 'PONG' ? 'ok' : 'down';
    } catch {
      return 'down';
    }
  }

  /** Records in the slot whether the worker's own data server answers (when it advertises one). */
  private async recordDataHealth(): Promise<void> {
    const health = await this.dataHealth();
    if (health !== undefined) await this.redis.hset(this.key, 'data', health);
  }

  /** Heartbeat (with the own data server's health); also frees a claim whose assignment never came. */
  private async beat(): Promise<void> {
    await this.recordDataHealth();
    const now = Date.now();
    await this.redis.zadd(this.slotsKey, now, this.id);
    await this.redis.pexpire(this.key, 10 * STALE_MS);
    const [state, since] = await this.redis.hmget(this.key, 'state', 'since');
    if (state === 'claimed' && now - Number(since) > CLAIM_EXPIRES_MS && (await this.redis.llen(this.inbox)) === 0) {
      await this.setState('idle');
    }
  }

  /**
   * Takes the slot for a job (`busy`) or a group job it coordinates (`waiting`) — unless a group
   * has just claimed it: then false, and the job goes back to the queue while the slot serves the
   * group (its assignment is on the way).
   */
  async enter(state: 'busy' | 'waiting', fields: { job: string; priority?: number }): Promise<boolean> {
    return (
      (await this.commands.ddpmEnterSlotState(this.key, state, Date.now(), fields.job, fields.priority ?? 0)) === 1
    );
  }

  /** Idle again after a job, unless a group has claimed the slot meanwhile (then it stays claimed). */
  async leave(): Promise<void> {
    // A rank whose generation ended because its own data server died must not be claimed again
    // before the next heartbeat would have said so: the server's health first, then idle.
    await this.recordDataHealth();
    await this.commands.ddpmLeaveSlot(this.key, Date.now());
  }

  async setState(state: SlotState, fields: { job?: string; priority?: number } = {}): Promise<void> {
    await this.redis.hset(this.key, {
      state,
      since: String(Date.now()),
      job: fields.job ?? '',
      // Who claimed the slot stays while it serves that claim; an idle slot was claimed by no one.
      ...(state === 'idle' ? { by: '' } : {}),
      ...(fields.priority !== undefined ? { priority: String(fields.priority) } : {}),
    });
  }

  /** Claims `need` other slots for `job` (at least `atLeast`), all or nothing. */
  async claim(job: string, priority: number, need: number, atLeast: number): Promise<ClaimResult> {
    const reply = await this.commands.ddpmClaimSlots(
      this.slotsKey,
      slotKeyPrefix(this.prefix),
      this.id,
      job,
      priority,
      need,
      atLeast,
      Date.now(),
      STALE_MS,
    );
    switch (reply[0]) {
      case 'ok':
        return { outcome: 'ok', slots: reply.slice(1) };
      case 'short':
        return { outcome: 'short', claimable: Number(reply[1]), live: Number(reply[2]) };
      default:
        return { outcome: 'preempted', by: reply[1] ?? '' };
    }
  }

  /** Slots with a fresh heartbeat (to tell a job it can never form here). */
  async liveSlots(): Promise<number> {
    return this.redis.zcount(this.slotsKey, Date.now() - STALE_MS, '+inf');
  }

  /** Sends an assignment to a claimed slot. */
  async assign(slotId: string, assignment: unknown): Promise<void> {
    const inbox = slotInboxKey(this.prefix, slotId);
    await this.redis.rpush(inbox, JSON.stringify(assignment));
    await this.redis.pexpire(inbox, CLAIM_EXPIRES_MS * 2);
  }

  /** The next assignment, waiting up to `seconds`. */
  async nextAssignment(seconds: number): Promise<string | undefined> {
    const got = await this.blocking.blpop(this.inbox, seconds);
    return got?.[1];
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.data?.disconnect();
    await this.redis.zrem(this.slotsKey, this.id).catch(() => undefined);
    await this.redis.del(this.key, this.inbox).catch(() => undefined);
  }
}
