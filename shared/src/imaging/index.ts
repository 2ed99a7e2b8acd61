/** Reading medical images (NIfTI-1/2, NRRD, DICOM series, RTSTRUCT) into one volume type. */
export type { ImageVolume, MaskVolume, FileBytes } from './types.js';
export { ImagingError, IMAGING_ERRORS, type ImagingErrorCode } from './errors.js';
export { DEFAULT_IMPORT_LIMITS, LIMIT_OPTIONS, importLimits, checkFileSize, type ImportLimits, type ImportLimit } from './limits.js';
export { voxelToWorld, worldToVoxelFn, voxelVolumeMm3, indexToWorldMatrix, type Vec3 } from './geometry.js';
export { readNiftiImage, niftiDeclaredSize } from './nifti.js';
export { readNrrdImage } from './nrrd.js';
export { parseDicomFile, dicomPixels, groupDicomSeries, dicomSeriesToVolume, readDicomSeries, transferSyntaxName, type DicomFile, type DicomSeries, type DicomSeriesOptions } from './dicom.js';
export {
  parseRtStruct,
  rasteriseRoi,
  rtStructToMasks,
  checkMaskVoxels,
  rtReferencedSeriesUids,
  fillPolygonEvenOdd,
  type RtStruct,
  type RtRoi,
  type RtContour,
  type RasteriseOptions,
} from './rtstruct.js';
export { maskVolumeMm3, maskVoxelCount, longestDiameterMm, longestDiameter, largestComponent, toMaskVolume, fileDigest, type DiameterResult } from './measure.js';
export { sniffFormat, type SniffedFormat } from './sniff.js';
export { readImageFile } from './read.js';
export { scanFolder, loadImportUnit, type ImportUnit, type FolderScan } from './folder.js';
export { encodePngRgb, crc32, PNG_SIGNATURE, type RgbImage } from './png.js';
