/**
 * Decompression bombs and oversized headers, built for the import-limit tests and
 * bench/import-bomb (the importer never uses this file). Real files: valid gzip that `gzip -t`
 * accepts, made by node:zlib.
 *
 * The tests write many gigabytes of zeros as one gzip member of 64 MiB of zeros (about 64 KiB)
 * repeated: concatenated members are one valid gzip stream (RFC 1952 §2.2), so a 1 GiB body
 * costs 0.2 s to build and about 1 MB on disk. `gzipOneMember` writes the same as a single
 * member (what `gzip` itself makes; about 2.5 s per GiB), for readers that stop after the first
 * member (nifti-reader-js's fflate did).
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { constants, createGzip, deflateRawSync, gzipSync } from 'node:zlib';

const MEMBER = 64 * 2 ** 20;
let zeroMember: Buffer | undefined;

/** `bytes` zeros as gzip (a multiple of 64 MiB, or a shorter last member). */
export function gzipZeros(bytes: number): Buffer {
  zeroMember ??= gzipSync(Buffer.alloc(MEMBER), { level: 9 });
  const parts: Buffer[] = [];
  for (let left = bytes; left > 0; left -= MEMBER) parts.push(left >= MEMBER ? zeroMember : gzipSync(Buffer.alloc(left), { level: 9 }));
  return Buffer.concat(parts);
}

/** `head` then `zeroBytes` zeros, as one gzip member, streamed through zlib (never all in memory). */
export async function gzipOneMember(head: Uint8Array, zeroBytes: number): Promise<Buffer> {
  const gz = createGzip({ level: 9 });
  const out: Buffer[] = [];
  gz.on('data', (b: Buffer) => out.push(b));
  const done = once(gz, 'end');
  gz.write(head);
  const chunk = Buffer.alloc(2 ** 20);
  for (let left = zeroBytes; left > 0; left -= chunk.length) {
    if (!gz.write(left >= chunk.length ? chunk : chunk.subarray(0, left))) await once(gz, 'drain');
  }
  gz.end();
  await done;
  return Buffer.concat(out);
}

export interface NiftiHeaderSpec {
  /** Up to 7 axes. */
  dims: number[];
  /** NIfTI datatype code: 2 uint8, 4 int16, 16 float32, ... */
  datatype: number;
  bitpix: number;
}

/** A little-endian NIfTI-1 single-file header (348 bytes + 4 extension bytes, vox_offset 352), 1 mm voxels, no qform/sform. */
export function niftiHeader(spec: NiftiHeaderSpec): Buffer {
  const h = Buffer.alloc(352);
  h.writeInt32LE(348, 0);
  h.writeInt16LE(spec.dims.length, 40);
  spec.dims.forEach((d, i) => h.writeInt16LE(d, 42 + 2 * i));
  h.writeInt16LE(spec.datatype, 70);
  h.writeInt16LE(spec.bitpix, 72);
  for (let i = 0; i < 4; i++) h.writeFloatLE(1, 76 + 4 * i);
  h.writeFloatLE(352, 108);
  h.write('n+1\0', 344, 'latin1');
  return h;
}

/** A .nii.gz: the header declared by `spec`, then `bodyBytes` zeros (need not match the header). */
export function niftiGz(spec: NiftiHeaderSpec, bodyBytes: number): Buffer {
  return Buffer.concat([gzipSync(niftiHeader(spec)), gzipZeros(bodyBytes)]);
}

/** An attached-data NRRD header of `sizes` and `type` ("uint8", "short", ...), gzip encoding. */
export function nrrdGzHeader(sizes: number[], type: string): Buffer {
  return Buffer.from(`NRRD0004\ntype: ${type}\ndimension: ${sizes.length}\nsizes: ${sizes.join(' ')}\nendian: little\nencoding: gzip\n\n`, 'latin1');
}

/** That NRRD with a payload of `bodyBytes` zeros. */
export function nrrdGz(sizes: number[], type: string, bodyBytes: number): Buffer {
  return Buffer.concat([nrrdGzHeader(sizes, type), gzipZeros(bodyBytes)]);
}

/**
 * A Part-10 DICOM file (explicit VR little endian) re-encoded as Deflated Explicit VR Little
 * Endian, with `zeroBytes` zeros after its data set inside the deflate stream. Raw deflate has no
 * checksum, so the zeros are one full-flushed 1 MiB block repeated: 1 GiB costs about 1 MB.
 */
export function deflatedDicom(part10: Buffer, zeroBytes = 0): Buffer {
  // Meta header: rewrite (0002,0010) to the deflate UID, fix (0002,0000), deflate the data set after it.
  const tsAt = part10.indexOf(Buffer.from([0x02, 0x00, 0x10, 0x00, 0x55, 0x49]));
  const oldLen = part10.readUInt16LE(tsAt + 6);
  const uid = Buffer.from('1.2.840.10008.1.2.1.99', 'latin1');
  const metaEnd = tsAt + 8 + oldLen;
  let end = metaEnd;
  while (part10.readUInt16LE(end) === 0x0002) end += 8 + part10.readUInt16LE(end + 6); // remaining short-form meta elements
  const head = Buffer.concat([part10.subarray(0, tsAt + 6), Buffer.from([uid.length, 0]), uid, part10.subarray(metaEnd, end)]);
  const glAt = head.indexOf(Buffer.from([0x02, 0x00, 0x00, 0x00, 0x55, 0x4c]));
  head.writeUInt32LE(head.readUInt32LE(glAt + 8) + uid.length - oldLen, glAt + 8);
  const flush = { finishFlush: constants.Z_FULL_FLUSH };
  const parts = [head, deflateRawSync(part10.subarray(end), flush)];
  const block = deflateRawSync(Buffer.alloc(2 ** 20), flush);
  for (let left = zeroBytes; left > 0; left -= 2 ** 20) parts.push(left >= 2 ** 20 ? block : deflateRawSync(Buffer.alloc(left), flush));
  parts.push(deflateRawSync(Buffer.alloc(0))); // the final (empty) block
  return Buffer.concat(parts);
}

/** Source of the child that reads one file: `node --input-type=module -e CHILD_READ moduleUrl fn file`. */
const CHILD_READ = `
import { readFileSync } from 'node:fs';
const [url, fn, file] = process.argv.slice(1);
const mod = await import(url);
const bytes = readFileSync(file);
const rss0 = process.memoryUsage().rss;
const t0 = performance.now();
let code = 'none', message = '';
try {
  const v = fn === 'readNifti' ? mod.readNifti(bytes) : mod[fn](bytes, file);
  message = 'read ' + (v.dims ? v.dims.join('x') : v.kind);
} catch (e) { code = e.code ?? 'thrown'; message = String(e.message ?? e); }
const ms = performance.now() - t0;
console.log(JSON.stringify({ code, message, ms, growthMiB: (process.resourceUsage().maxRSS * 1024 - rss0) / 2 ** 20 }));
`;

export interface ChildRead {
  /** The ImagingError code, 'none' when the file was read, 'thrown' for another error. */
  code: string;
  /** The error message, or "read DIMS". */
  message: string;
  /** Time of the reader call. */
  ms: number;
  /** process.resourceUsage().maxRSS minus the RSS just before the call: the peak memory the read took. */
  growthMiB: number;
}

/**
 * Reads `file` with `fn(bytes, file)` of the module at `moduleUrl` (`readNifti(bytes)` for the
 * legacy reader) in a fresh node process, so the caller's heap does not blur the memory figure.
 * `vmemKiB`: `ulimit -v` of the child, for readers that might inflate everything.
 */
export async function readInChild(moduleUrl: string, fn: string, file: string, vmemKiB?: number): Promise<ChildRead> {
  const node = [process.execPath, '--input-type=module', '-e', CHILD_READ, moduleUrl, fn, file];
  const [cmd, ...args] = vmemKiB === undefined ? node : ['/bin/sh', '-c', `ulimit -v ${vmemKiB}; exec "$@"`, 'sh', ...node];
  const { stdout } = await promisify(execFile)(cmd, args, { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as ChildRead;
}
