/**
 * DICOM RLE Lossless (transfer syntax 1.2.840.10008.1.2.5, PS3.5 Annex G): a 64-byte header
 * (segment count + 15 offsets) and one PackBits segment per byte plane, most significant first.
 */
import { ImagingError } from './errors.js';

/**
 * Decodes one RLE frame into unsigned sample values (before sign handling/rescale).
 * Only single-sample (grey) images: bytesPerSample segments. The caller checks `pixels` against
 * the import limits; a run that would write past the frame is refused (TWF_E_IMPORT_CORRUPT).
 */
export function decodeRleFrame(frame: Uint8Array, pixels: number, bytesPerSample: number, file: string | undefined): Uint32Array {
  const bad = (why: string): never => {
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', file, `RLE pixel data is damaged: ${why}; re-export the series`);
  };
  if (frame.length < 64) bad(`frame is ${frame.length} bytes, shorter than the 64-byte RLE header`);
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const nseg = v.getUint32(0, true);
  if (nseg !== bytesPerSample) {
    throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', file, `RLE frame has ${nseg} segments, expected ${bytesPerSample} for one ${8 * bytesPerSample}-bit sample per pixel (colour RLE is not read)`);
  }
  const offsets: number[] = [];
  for (let s = 0; s < nseg; s++) offsets.push(v.getUint32(4 + 4 * s, true));
  const segment = (s: number) => ({ start: offsets[s], end: s + 1 < nseg ? offsets[s + 1] : frame.length });
  // Before allocating from Rows x Columns: every segment must be able to fill its plane. A PackBits
  // run of 2 bytes expands to at most 128, so a segment of L bytes decodes to at most 64·L.
  for (let s = 0; s < nseg; s++) {
    const { start, end } = segment(s);
    if (start < 64 || end > frame.length || end < start) bad(`segment ${s} offsets ${start}..${end} are outside the frame (${frame.length} bytes)`);
    if (64 * (end - start) < pixels) bad(`segment ${s} holds ${end - start} bytes, which decode to at most ${64 * (end - start)}; the image needs ${pixels}`);
  }
  const out = new Uint32Array(pixels);
  const plane = new Uint8Array(pixels);
  for (let s = 0; s < nseg; s++) {
    const { start, end } = segment(s);
    let i = start;
    let o = 0;
    while (o < pixels && i < end) {
      const n = frame[i++];
      if (n < 128) {
        const len = n + 1;
        if (i + len > end) bad(`literal run overruns segment ${s}`);
        if (o + len > pixels) bad(`a literal run of segment ${s} would expand past the frame (${o + len} of ${pixels} bytes)`);
        plane.set(frame.subarray(i, i + len), o);
        i += len;
        o += len;
      } else if (n > 128) {
        const len = 257 - n;
        if (i >= end) bad(`repeat run overruns segment ${s}`);
        if (o + len > pixels) bad(`a repeat run of segment ${s} would expand past the frame (${o + len} of ${pixels} bytes)`);
        plane.fill(frame[i++], o, o + len);
        o += len;
      } // 128: no-op
    }
    if (o !== pixels) bad(`segment ${s} decodes to ${o} bytes, the image needs ${pixels}`);
    const shift = 8 * (nseg - 1 - s);
    for (let p = 0; p < pixels; p++) out[p] += plane[p] * 2 ** shift;
  }
  return out;
}
