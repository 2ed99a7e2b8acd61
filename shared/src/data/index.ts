export { readNifti, type NiftiVolume } from './nifti.js';
export { extractSlices, concatSlices, tumourSliceIndices, DEFAULT_SUV_NORMALISATION, type ExtractOptions, type SliceSet, type SuvNormalisation } from './slices.js';
export { loadStsCase, listStsCases, type StsCase } from './sts.js';
