/** Converting stored voxel bytes of any common numeric type and byte order to Float32. */
import { ImagingError } from './errors.js';

export type SampleType = 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'float32' | 'float64';

export const SAMPLE_BYTES: Record<SampleType, number> = {
  int8: 1,
  uint8: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
  float32: 4,
  float64: 8,
};

/**
 * A fresh, exactly-sized copy of bytes[start, end). (Buffer#slice returns a view into Node's shared
 * pool, so `.buffer` of it is not just these bytes.)
 */
export function copyBytes(bytes: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(bytes.subarray(start, end));
  return out;
}

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Reads `count` samples of `type` from `bytes` at `offset` in the given byte order and returns
 * `value * slope + inter` as Float32 (computed in float64). Throws TWF_E_IMPORT_CORRUPT when the
 * bytes are too few (never returns a partial volume).
 */
export function decodeSamples(bytes: Uint8Array, offset: number, count: number, type: SampleType, littleEndian: boolean, file: string | undefined, slope = 1, inter = 0): Float32Array {
  const size = SAMPLE_BYTES[type];
  const need = count * size;
  if (offset < 0 || offset + need > bytes.length) {
    const have = Math.max(0, bytes.length - offset);
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', file, `file is truncated: ${have} bytes of voxel data, the header needs ${need} (${count} voxels of ${type}); re-copy or re-export the file`);
  }
  const out = new Float32Array(count);
  const scaled = slope !== 1 || inter !== 0;
  if (size === 1 || littleEndian === HOST_LE) {
    // Exactly-sized, aligned copy so a typed-array view can be used.
    const buf = copyBytes(bytes, offset, offset + need).buffer;
    const src = typedView(buf, type);
    if (type === 'int64' || type === 'uint64') {
      const b = src as BigInt64Array | BigUint64Array;
      for (let i = 0; i < count; i++) out[i] = Number(b[i]) * slope + inter;
    } else {
      const n = src as Exclude<typeof src, BigInt64Array | BigUint64Array>;
      if (scaled) for (let i = 0; i < count; i++) out[i] = n[i] * slope + inter;
      else out.set(n);
    }
    return out;
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, need);
  const le = littleEndian;
  const read: (o: number) => number = {
    int8: (o: number) => v.getInt8(o),
    uint8: (o: number) => v.getUint8(o),
    int16: (o: number) => v.getInt16(o, le),
    uint16: (o: number) => v.getUint16(o, le),
    int32: (o: number) => v.getInt32(o, le),
    uint32: (o: number) => v.getUint32(o, le),
    int64: (o: number) => Number(v.getBigInt64(o, le)),
    uint64: (o: number) => Number(v.getBigUint64(o, le)),
    float32: (o: number) => v.getFloat32(o, le),
    float64: (o: number) => v.getFloat64(o, le),
  }[type];
  for (let i = 0; i < count; i++) out[i] = read(i * size) * slope + inter;
  return out;
}

function typedView(buf: ArrayBuffer, type: SampleType) {
  switch (type) {
    case 'int8':
      return new Int8Array(buf);
    case 'uint8':
      return new Uint8Array(buf);
    case 'int16':
      return new Int16Array(buf);
    case 'uint16':
      return new Uint16Array(buf);
    case 'int32':
      return new Int32Array(buf);
    case 'uint32':
      return new Uint32Array(buf);
    case 'int64':
      return new BigInt64Array(buf);
    case 'uint64':
      return new BigUint64Array(buf);
    case 'float32':
      return new Float32Array(buf);
    case 'float64':
      return new Float64Array(buf);
  }
}
