/**
 * One volume type for every importer (NIfTI, NRRD, DICOM series, RTSTRUCT masks).
 *
 * World coordinates are DICOM patient coordinates, LPS+ (x to the patient's left,
 * y to posterior, z to superior), in millimetres, for every format: NIfTI (RAS+)
 * and NRRD declared in RAS/LAS are converted on import. This matches ITK/SimpleITK.
 *
 * Voxel (i, j, k) is at world
 *   originMm + D · (i·spacingMm[0], j·spacingMm[1], k·spacingMm[2])
 * where D is `direction` read row-major: D[r][c] = direction[3 * r + c], and column c of
 * D is the unit vector of voxel axis c (ITK's GetDirection() convention).
 */
export interface ImageVolume {
  /** Voxels along x (columns), y (rows), z (slices). */
  dims: [number, number, number];
  spacingMm: [number, number, number];
  /** World (LPS, mm) position of the centre of voxel (0,0,0). */
  originMm: [number, number, number];
  /** 3x3 direction cosines, row-major; column c = world direction of voxel axis c. */
  direction: number[];
  /** Intensities, x fastest: index = i + nx * (j + ny * k); rescale slope/intercept applied. */
  data: Float32Array;
  modality?: string;
  seriesUid?: string;
  seriesDescription?: string;
  studyDate?: string;
  patientId?: string;
  /** DICOM FrameOfReferenceUID (DICOM and RTSTRUCT-derived volumes only). */
  frameOfReferenceUid?: string;
  /** Things the importer did that the user should know (volume 0 of a 4D file taken, spacing made uniform, ...). */
  warnings?: string[];
  source: { format: 'nifti1' | 'nifti2' | 'nrrd' | 'dicom'; files: string[]; littleEndian?: boolean; transferSyntaxUid?: string };
}

export interface MaskVolume extends ImageVolume {
  /** Non-zero voxel values and what they mean. */
  labels: { value: number; name: string }[];
}

/** One file held in memory: a name (path or file name, used in messages) and its bytes. */
export interface FileBytes {
  name: string;
  bytes: Uint8Array;
}
