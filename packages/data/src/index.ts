/** @ddpm/data — image datasets streamed with a seeded, resumable order. */
export { type DataErrorCode, type ImageDataset } from './dataset';
export {
  DEFAULT_DATA_ACCESS,
  type DataAccess,
  allowedPath,
  configureDataAccess,
  dataAccess,
  gunzipIfGzip,
  readDataFile,
} from './data-access';
export { openIdx, readIdxLabels } from './idx';
export { CIFAR10_RECORD_BYTES, isGzip, looksLikeCifar10, looksLikeIdxImages } from './formats';
export { CIFAR10_FILES, openCifar10 } from './cifar10';
export { imageDimensions, listImages, openImageFolder } from './image-folder';
export { type ProceduralOptions, proceduralShapes } from './procedural';
export {
  DATASET_KINDS,
  type DatasetKind,
  type DatasetSpec,
  FASHION_MNIST_DIR,
  STORE_DATASET_NAME,
  type Split,
  datasetPath,
  parseDatasetSpec,
  withAbsoluteLocation,
} from './spec';
export { openDataset } from './open-dataset';
export { type Batch, DataLoader, type LoaderOptions, type LoaderState, readForModel, toModelInput } from './loader';
