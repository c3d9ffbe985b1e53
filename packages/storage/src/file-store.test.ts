import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { FileStore } from './file-store';
import { openStore } from './open-store';
import { describeObjectStoreContract } from '../../../test/support/object-store-contract';

let root: string;
beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-store-'));
});
afterAll(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

describeObjectStoreContract('file://', () => new FileStore(path.join(root, 'contract')));

describe('FileStore', () => {
  it('never lists half-written temporary files', async () => {
    const store = new FileStore(root);
    await fs.mkdir(path.join(root, 'k'), { recursive: true });
    await fs.writeFile(path.join(root, 'k', 'obj.ddpm-tmp-123-abcd'), 'partial');
    expect(await store.list('k/')).toEqual([]);
  });

  it('removes the temporary files of writes that died under a prefix, and nothing else', async () => {
    const store = new FileStore(path.join(root, 'sweep'));
    await store.put('runs/a/checkpoints/step-1/model.safetensors', new Uint8Array([1]));
    await store.put('runs/b/x', new Uint8Array([2]));
    const dir = path.join(root, 'sweep', 'runs', 'a', 'checkpoints', 'step-1');
    await fs.writeFile(path.join(dir, 'optimizer.safetensors.ddpm-tmp-30254-260e2523'), 'partial');
    await fs.writeFile(path.join(root, 'sweep', 'runs', 'b', 'y.ddpm-tmp-1-ab'), 'partial');
    expect(await store.removeTemporaries('runs/a/')).toBe(1);
    expect(await fs.readdir(dir)).toEqual(['model.safetensors']);
    // Another run's temporaries are its owner's to remove.
    expect(await fs.readdir(path.join(root, 'sweep', 'runs', 'b'))).toEqual(['x', 'y.ddpm-tmp-1-ab']);
    expect((await store.list('runs/')).map((o) => o.key)).toEqual([
      'runs/a/checkpoints/step-1/model.safetensors',
      'runs/b/x',
    ]);
  });

  it('opens stores from URLs and paths, rejecting unknown schemes', () => {
    expect(openStore(`file://${root}`).url).toBe(`file://${root}`);
    expect(openStore(root).url).toBe(`file://${root}`);
    expect(openStore(root).urlOf('runs/b/z.bin')).toBe(`file://${root}/runs/b/z.bin`);
    expect(() => openStore('ftp://host/x')).toThrow(
      'unsupported storage URL "ftp://host/x"; use file:///path or s3://bucket/prefix',
    );
    expect(() => openStore(' ')).toThrow(/storage URL is empty/);
  });
});
