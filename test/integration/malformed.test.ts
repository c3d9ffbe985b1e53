/** 40+ malformed requests: each gets the right 4xx with a message, and no job is enqueued. */
import { type Stack, startStack, tinyTrain } from './service-support';

let stack: Stack;
let trainId: string;
beforeAll(async () => {
  stack = await startStack({ workers: 0 });
  trainId = (await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain() })).json().id;
});
afterAll(async () => {
  await stack.close();
});

async function jobCount(): Promise<number> {
  let n = 0;
  for (const q of Object.values(stack.queues)) {
    const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
    n += Object.values(counts).reduce((a, b) => a + b, 0);
  }
  return n;
}

type Case = [
  name: string,
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  body: unknown,
  status: number,
  message?: RegExp,
  headers?: Record<string, string>,
];

const train = (o: Record<string, unknown>): Record<string, unknown> => tinyTrain(o);
const drop = (key: string): Record<string, unknown> => {
  const t = tinyTrain();
  delete t[key];
  return t;
};

const CASES: Case[] = [
  ['steps as a string', 'POST', '/jobs/train', train({ steps: '10' }), 400, /steps.*must be integer/],
  ['negative steps', 'POST', '/jobs/train', train({ steps: -1 }), 400, /steps.*>= 1/],
  ['zero steps', 'POST', '/jobs/train', train({ steps: 0 }), 400, /steps/],
  ['fractional steps', 'POST', '/jobs/train', train({ steps: 1.5 }), 400, /steps.*integer/],
  ['huge steps', 'POST', '/jobs/train', train({ steps: 1e9 }), 400, /steps.*<= 10000000/],
  ['missing dataset', 'POST', '/jobs/train', drop('dataset'), 400, /dataset/],
  ['missing preset', 'POST', '/jobs/train', drop('preset'), 400, /preset/],
  ['unknown preset', 'POST', '/jobs/train', train({ preset: 'huge' }), 400, /preset/],
  ['unknown field', 'POST', '/jobs/train', train({ colour: 'red' }), 400, /additional properties/],
  ['empty dataset', 'POST', '/jobs/train', train({ dataset: '' }), 400, /dataset/],
  [
    'unknown dataset kind',
    'POST',
    '/jobs/train',
    train({ dataset: 'imagenet:/data' }),
    400,
    /unknown dataset kind "imagenet"/,
  ],
  [
    'dataset option unknown',
    'POST',
    '/jobs/train',
    train({ dataset: 'procedural:shapes?colour=red' }),
    400,
    /has no option "colour"/,
  ],
  [
    'oversized dataset spec',
    'POST',
    '/jobs/train',
    train({ dataset: `folder:/${'x'.repeat(2000)}` }),
    400,
    /dataset.*1024/,
  ],
  ['zero batch', 'POST', '/jobs/train', train({ batchSize: 0 }), 400, /batchSize/],
  ['huge batch', 'POST', '/jobs/train', train({ batchSize: 100000 }), 400, /batchSize/],
  [
    'batch not divisible by accumulation',
    'POST',
    '/jobs/train',
    train({ batchSize: 6, accumulation: 4 }),
    400,
    /batchSize 6 must be divisible by accumulation 4/,
  ],
  ['zero learning rate', 'POST', '/jobs/train', train({ learningRate: 0 }), 400, /learningRate/],
  ['learning rate above 1', 'POST', '/jobs/train', train({ learningRate: 2 }), 400, /learningRate/],
  ['EMA decay of 1', 'POST', '/jobs/train', train({ emaDecay: 1 }), 400, /emaDecay/],
  ['negative dropout', 'POST', '/jobs/train', train({ dropout: -0.1 }), 400, /dropout/],
  ['unknown schedule', 'POST', '/jobs/train', train({ schedule: 'sigmoid' }), 400, /schedule/],
  ['unknown mean type', 'POST', '/jobs/train', train({ meanType: 'score' }), 400, /meanType/],
  [
    'untrainable combination',
    'POST',
    '/jobs/train',
    train({ varianceType: 'learned', lossType: 'mse' }),
    400,
    /no training signal/,
  ],
  ['zero timesteps', 'POST', '/jobs/train', train({ timesteps: 0 }), 400, /timesteps/],
  [
    'a group with too few micro-batches',
    'POST',
    '/jobs/train',
    train({ workers: 2, accumulation: 1 }),
    400,
    /accumulation 1 gives 2 workers nothing to split/,
  ],
  [
    'minWorkers above workers',
    'POST',
    '/jobs/train',
    train({ workers: 2, minWorkers: 3 }),
    400,
    /minWorkers 3 exceeds workers 2/,
  ],
  [
    'rank timeout too short',
    'POST',
    '/jobs/train',
    train({ workers: 2, rankTimeoutSeconds: 1 }),
    400,
    /rankTimeoutSeconds/,
  ],
  ['zero workers', 'POST', '/jobs/train', train({ workers: 0 }), 400, /workers/],
  ['flip as a string', 'POST', '/jobs/train', train({ randomFlip: 'yes' }), 400, /randomFlip.*boolean/],
  ['negative seed', 'POST', '/jobs/train', train({ seed: -1 }), 400, /seed/],
  ['body is an array', 'POST', '/jobs/train', [tinyTrain()], 400, /object/],
  ['body is null', 'POST', '/jobs/train', 'null', 400],
  ['body is not JSON', 'POST', '/jobs/train', '{"steps": 1', 400, /JSON/],
  ['body is text', 'POST', '/jobs/train', 'steps=1', 415, undefined, { 'content-type': 'text/plain' }],
  ['oversized body', 'POST', '/jobs/train', { ...tinyTrain(), dataset: 'x'.repeat(70 * 1024) }, 413],
  [
    'over-long Idempotency-Key',
    'POST',
    '/jobs/train',
    tinyTrain(),
    400,
    /idempotency-key/,
    { 'idempotency-key': 'k'.repeat(300) },
  ],
  ['sample without trainJobId', 'POST', '/jobs/sample', { count: 4 }, 400, /trainJobId/],
  [
    'sample of a run and a shipped model at once',
    'POST',
    '/jobs/sample',
    { trainJobId: 'TRAIN', pretrained: 'fashion-mnist-cpu' },
    400,
    /either trainJobId .* or pretrained/,
  ],
  ['sample of an unknown shipped model', 'POST', '/jobs/sample', { pretrained: 'imagenet-gpu' }, 400, /pretrained/],
  ['unknown recipe', 'POST', '/jobs/train', train({ recipe: 'imagenet-gpu' }), 400, /recipe/],
  ['zero time budget', 'POST', '/jobs/train', train({ budgetMinutes: 0 }), 400, /budgetMinutes/],
  [
    'sample with path traversal',
    'POST',
    '/jobs/sample',
    { trainJobId: '../../etc/passwd', count: 4 },
    400,
    /trainJobId/,
  ],
  [
    'sample of an unknown run',
    'POST',
    '/jobs/sample',
    { trainJobId: 'train-00000000-0000', count: 4 },
    400,
    /names no train job/,
  ],
  ['sample count 0', 'POST', '/jobs/sample', { trainJobId: 'TRAIN', count: 0 }, 400, /count/],
  ['sample count too large', 'POST', '/jobs/sample', { trainJobId: 'TRAIN', count: 5000 }, 400, /count/],
  ['unknown sampler', 'POST', '/jobs/sample', { trainJobId: 'TRAIN', count: 4, sampler: 'euler' }, 400, /sampler/],
  ['eval with no metrics', 'POST', '/jobs/eval', { trainJobId: 'TRAIN', metrics: [] }, 400, /metrics/],
  [
    'eval of a run and a shipped model at once',
    'POST',
    '/jobs/eval',
    { trainJobId: 'TRAIN', pretrained: 'fashion-mnist-cpu', metrics: ['fd'] },
    400,
    /either trainJobId .* or pretrained/,
  ],
  [
    'eval of an unknown shipped model',
    'POST',
    '/jobs/eval',
    { pretrained: 'cifar10-hours', metrics: ['fd'] },
    400,
    /pretrained/,
  ],
  [
    'eval of a step of a shipped model',
    'POST',
    '/jobs/eval',
    { pretrained: 'fashion-mnist-cpu', metrics: ['fd'], step: 5 },
    400,
    /step applies to a train job's checkpoints/,
  ],
  [
    'eval with a repeated metric',
    'POST',
    '/jobs/eval',
    { trainJobId: 'TRAIN', metrics: ['fd', 'fd'] },
    400,
    /duplicate|unique/,
  ],
  [
    'eval asking for "fid" (the metric is fd, named by its extractor)',
    'POST',
    '/jobs/eval',
    { trainJobId: 'TRAIN', metrics: ['fid'] },
    400,
    /metrics/,
  ],
  [
    'eval with an unknown extractor',
    'POST',
    '/jobs/eval',
    { trainJobId: 'TRAIN', metrics: ['fd'], extractor: 'clip' },
    400,
    /extractor/,
  ],
  ['eval with an unknown metric', 'POST', '/jobs/eval', { trainJobId: 'TRAIN', metrics: ['psnr'] }, 400, /metrics/],
  ['job id with traversal', 'GET', '/jobs/..%2F..%2Fetc%2Fpasswd', undefined, 400, /id/],
  ['job id with dots', 'GET', '/jobs/a.b', undefined, 400, /id/],
  ['unknown job', 'GET', '/jobs/train-unknown', undefined, 404, /no job/],
  ['cancel unknown job', 'DELETE', '/jobs/sample-unknown', undefined, 404, /no job/],
  ['sample file traversal', 'GET', '/samples/..%2F..%2Fetc%2Fpasswd', undefined, 400],
  ['unknown sample', 'GET', '/samples/nothing-here', undefined, 404, /no sample/],
  ['list limit too large', 'GET', '/jobs?limit=1000', undefined, 400, /limit/],
  ['list unknown state', 'GET', '/jobs?state=bogus', undefined, 400, /state/],
  ['list unknown parameter', 'GET', '/jobs?sort=asc', undefined, 400],
  ['unknown route', 'GET', '/v2/jobs', undefined, 404, /no route GET \/v2\/jobs/],
];

test.each(
  CASES.map(([name, method, url, body, status, message, headers]) => ({
    name,
    method,
    url,
    body,
    status,
    message,
    headers,
  })),
)('$name → $status', async ({ method, url, body, status, message, headers }) => {
  const before = await jobCount();
  const payload =
    typeof body === 'object' && body !== null
      ? JSON.parse(JSON.stringify(body).replace(/"TRAIN"/g, JSON.stringify(trainId)))
      : body;
  const response = await stack.app.inject({
    method,
    url,
    ...(payload !== undefined ? { payload: typeof payload === 'string' ? payload : JSON.stringify(payload) } : {}),
    headers: { ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
  });
  expect(response.statusCode).toBe(status);
  const json = response.json<{ error: string; message?: string }>();
  expect(typeof json.error).toBe('string');
  if (message) expect(json.message ?? '').toMatch(message);
  expect(await jobCount()).toBe(before);
});

test('there are more than 40 cases', () => {
  expect(CASES.length).toBeGreaterThan(40);
});
