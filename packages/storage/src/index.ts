/** @ddpm/storage — one object-store interface; `file://` now, `s3://` with the service. */
export { type ObjectInfo, type ObjectStore, type StorageErrorCode, checkKey, joinKey } from './object-store';
export { FileStore } from './file-store';
export { openStore } from './open-store';
export { PatientStore, type PatientStoreOptions, type StoreWait } from './patient-store';
export { S3Store, type S3StoreOptions } from './s3-store';
