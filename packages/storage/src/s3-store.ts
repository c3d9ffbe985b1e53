/**
 * `s3://bucket/prefix` storage through @aws-sdk/client-s3: any S3-compatible endpoint (AWS, MinIO,
 * s3rver in tests) via `S3_ENDPOINT`, credentials and region from the usual AWS environment.
 * Objects above `multipartThreshold` go up in parts (@aws-sdk/lib-storage), so multi-hundred-MB
 * checkpoints neither sit in one request nor restart from zero on a dropped part. The SDK retries
 * throttling and transient errors with exponential backoff (`maxAttempts`). S3 writes are atomic
 * per object: readers see the old or the new object, never a part.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

import { type ObjectInfo, type ObjectStore, storageError, checkKey } from './object-store';

export interface S3StoreOptions {
  readonly bucket: string;
  readonly prefix?: string;
  /** e.g. http://127.0.0.1:9000 for MinIO; path-style addressing is used with a custom endpoint. */
  readonly endpoint?: string;
  readonly region?: string;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Bytes above which uploads are multipart (default 16 MiB; parts of 8 MiB). */
  readonly multipartThreshold?: number;
  readonly partSize?: number;
  readonly maxAttempts?: number;
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

export class S3Store implements ObjectStore {
  readonly url: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly multipartThreshold: number;
  private readonly partSize: number;

  constructor(options: S3StoreOptions) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(options.bucket)) {
      throw storageError('DDPM_STORAGE_BAD_URL', `invalid S3 bucket name ${JSON.stringify(options.bucket)}`);
    }
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (this.prefix !== '') checkKey(this.prefix);
    this.url = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.multipartThreshold = options.multipartThreshold ?? 16 * 1024 * 1024;
    this.partSize = Math.max(options.partSize ?? 8 * 1024 * 1024, 5 * 1024 * 1024);
    const config: S3ClientConfig = {
      region: options.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'] ?? 'us-east-1',
      maxAttempts: options.maxAttempts ?? 5,
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    };
    this.client = new S3Client(config);
  }

  private keyOf(key: string): string {
    checkKey(key);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  private fail(action: string, key: string, err: unknown): never {
    throw storageError('DDPM_STORAGE_IO', `could not ${action} ${this.urlOf(key)}: ${(err as Error).message}`, {
      cause: err,
    });
  }

  async put(key: string, body: Uint8Array, options: { contentType?: string } = {}): Promise<void> {
    const Key = this.keyOf(key);
    const ContentType = options.contentType ?? 'application/octet-stream';
    try {
      if (body.length > this.multipartThreshold) {
        await new Upload({
          client: this.client,
          params: { Bucket: this.bucket, Key, Body: body, ContentType },
          partSize: this.partSize,
          queueSize: 4,
          leavePartsOnError: false,
        }).done();
      } else {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentType }));
      }
    } catch (err) {
      this.fail('write', key, err);
    }
  }

  async get(key: string): Promise<Uint8Array> {
    const Key = this.keyOf(key); // a bad key is the caller's error, not an I/O one
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      return await out.Body!.transformToByteArray();
    } catch (err) {
      if (isNotFound(err)) throw storageError('DDPM_STORAGE_NOT_FOUND', `no object ${this.urlOf(key)}`);
      this.fail('read', key, err);
    }
  }

  async exists(key: string): Promise<boolean> {
    const Key = this.keyOf(key);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      this.fail('inspect', key, err);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const full = this.prefix ? `${this.prefix}/${prefix}` : prefix;
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: full,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
        for (const o of page.Contents ?? []) {
          if (o.Key === undefined) continue;
          out.push({ key: this.prefix ? o.Key.slice(this.prefix.length + 1) : o.Key, size: o.Size ?? 0 });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw storageError('DDPM_STORAGE_IO', `could not list ${this.url}/${prefix}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    const Key = this.keyOf(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      if (!isNotFound(err)) this.fail('delete', key, err);
    }
  }

  urlOf(key: string): string {
    return key === '' ? this.url : `${this.url}/${checkKey(key)}`;
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}
