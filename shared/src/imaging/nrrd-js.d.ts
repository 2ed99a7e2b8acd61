/** Minimal typings for nrrd-js 0.2.x (CommonJS, no bundled types): only what nrrd.ts uses. */
declare module 'nrrd-js' {
  export interface NrrdParsed {
    version?: number;
    dimension?: number;
    type?: string;
    encoding?: string;
    endian?: string;
    sizes?: number[];
    spacings?: number[];
    kinds?: (string | null)[];
    space?: string;
    spaceDimension?: number;
    spaceDirections?: (number[] | null)[];
    spaceOrigin?: number[];
    lineSkip?: number;
    byteSkip?: number;
    dataFile?: unknown;
    content?: string;
    keys: Record<string, string>;
    /** Decoded samples for raw (native order) and ascii encodings; undefined otherwise. */
    data?: ArrayLike<number>;
    /** Bytes after the header. */
    buffer?: ArrayBuffer;
  }
  const nrrd: {
    parse(buffer: ArrayBuffer): NrrdParsed;
    serialize(nrrd: Partial<NrrdParsed> & { data?: ArrayLike<number> }): ArrayBuffer;
  };
  export default nrrd;
}
